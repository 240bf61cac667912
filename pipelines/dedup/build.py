"""Build the compiled dedup hasher (``_fasthash``) in place: ``python -m pipelines.dedup.build``.

It needs a C compiler, the Python headers and OpenSSL's headers (``libssl-dev``), which a machine
that builds CPython has. ``scripts/bootstrap.sh`` runs it after installing the requirements; it
rebuilds only when the source or the interpreter changed. Without the extension the pure-Python path
runs, with identical hashes (about 4x slower); ``python -m pipelines.dedup.build --check`` says which.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "_fasthash.c"
STAMP_SUFFIX = ".build"


def target() -> Path:
    return HERE / f"_fasthash{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"


def _fingerprint(command: list[str]) -> str:
    return hashlib.sha256(SOURCE.read_bytes() + "\0".join(command).encode() + sys.version.encode()).hexdigest()


def compile_command(out: Path) -> list[str]:
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    include = sysconfig.get_paths()["include"]
    # No -march=native: the extension must run on any x86-64 / arm64 host the build is copied to
    # (a Docker image); OpenSSL picks SHA extensions at run time.
    return [*cc, "-O2", "-fPIC", "-shared", "-Wall", "-Werror", f"-I{include}", str(SOURCE), "-o", str(out), "-lcrypto"]


def build(*, force: bool = False, quiet: bool = False) -> Path:
    """Compile the extension next to this file; a no-op when it is up to date."""
    out = target()
    command = compile_command(out)
    stamp = out.with_name(out.name + STAMP_SUFFIX)
    fingerprint = _fingerprint(command)
    if not force and out.exists() and stamp.exists() and stamp.read_text().strip() == fingerprint:
        if not quiet:
            print(f"dedup: compiled hasher up to date ({out.name})")
        return out
    tmp = out.with_name(out.name + ".tmp")
    result = subprocess.run(compile_command(tmp), capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"compiling {SOURCE.name} failed:\n$ {shlex.join(command)}\n{result.stderr.strip()}")
    os.replace(tmp, out)  # a running process keeps the old mapping; new imports see the new file
    stamp.write_text(fingerprint + "\n")
    if not quiet:
        print(f"dedup: built {out.relative_to(HERE.parent.parent)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.dedup.build",
        description="Compile the dedup hasher (normalize + SHA-256 in C) in place. Optional: without it, "
                    "the pure-Python path gives the same hashes, slower.")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--check", action="store_true", help="only say which implementation imports; exit 1 if Python")
    args = parser.parse_args(argv)
    if args.check:
        import importlib

        normalize = importlib.import_module("pipelines.dedup.normalize")  # the package re-exports a function of that name
        print(f"dedup hasher: {normalize.IMPLEMENTATION}")
        return 0 if normalize.IMPLEMENTATION == "compiled" else 1
    try:
        build(force=args.force)
    except (RuntimeError, OSError) as exc:
        print(f"dedup: {exc}\ndedup: the pure-Python hasher will be used (same hashes, slower). "
              "Install a C compiler and libssl-dev, then rerun: python -m pipelines.dedup.build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
