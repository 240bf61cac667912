"""No import circles inside ``pipelines/``.

The graph is built from the source with ``ast``: every ``import pipelines.x`` / ``from pipelines.x import y``
anywhere in a module (top level, inside functions, under ``TYPE_CHECKING``) is an edge, so a circle hidden
behind a lazy import counts too. Nothing is allow-listed; a failure prints the circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipelines"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module ``name`` refers to: itself, or the package holding an imported attribute."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Edges module -> modules of ``pipelines`` it imports anywhere in its body."""
    files = {_module_name(p): p for p in package.rglob("*.py")}
    # Compiled extensions (``from pipelines.dedup import _fasthash``) are leaf modules, not their package.
    extensions = {_module_name(p.with_name(p.name.split(".")[0] + ".py"))
                  for pattern in ("*.c", "*.so", "*.pyd") for p in package.rglob(pattern)}
    modules = set(files) | extensions
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")
                    base = base[: len(base) - node.level + (1 if is_package else 0)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{alias.name}" for alias in node.names]
            for target in targets:
                if not target.startswith("pipelines"):
                    continue
                resolved = _resolve(target, modules)
                if resolved and resolved != module:
                    graph[module].add(resolved)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle as a path ``[a, b, ..., a]``, or None (iterative DFS, deterministic order)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_pipelines_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle in pipelines/: " + " -> ".join(cycle)


def test_the_check_sees_a_circle_behind_a_function_level_import(tmp_path):
    pkg = tmp_path / "pipelines"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pipelines.sub.b import thing\n")
    (pkg / "sub" / "b.py").write_text("def thing():\n    from ..a import x\n    return x\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        graph = import_graph(pkg)
    finally:
        ROOT = saved
    assert graph["pipelines.a"] == {"pipelines.sub.b"}
    assert graph["pipelines.sub.b"] == {"pipelines.a"}
    assert find_cycle(graph) == ["pipelines.a", "pipelines.sub.b", "pipelines.a"]
