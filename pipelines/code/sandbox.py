"""Run untrusted code (a model's completion and its unit tests) in a subprocess with limits.

Limits: wall-clock and CPU time, address space (memory), file size, open files, no child processes
where the platform allows it; an empty environment and a fresh temporary working folder; no network:
the child runs in a new network namespace (``unshare -n``, or ``unshare -rn`` as an unprivileged user)
when that works on the host, and in every case its ``socket`` module refuses to create sockets, so a
test that tries to connect fails either way.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

# Prepended to the child's program: no sockets, whatever namespace it runs in.
_NO_NETWORK = """
import socket as _s
def _refuse(*a, **k):
    raise OSError(101, "network is unreachable in the sandbox")
class _NoSocket:
    def __init__(self, *a, **k):
        _refuse()
_s.socket = _NoSocket
_s.create_connection = _refuse
_s.socketpair = _refuse
del _s
"""


@dataclass(frozen=True)
class SandboxResult:
    """``passed``: exit status 0 in time. ``reason``: ``ok``, ``failed``, ``timeout`` or ``killed`` (a limit)."""

    passed: bool
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    isolated_network: bool


@functools.lru_cache(maxsize=1)
def network_namespace_prefix() -> tuple[str, ...]:
    """The ``unshare`` command that gives a child no network on this host, or () when none works."""
    tool = shutil.which("unshare")
    if tool is None:
        return ()
    for args in ((tool, "-n"), (tool, "-rn")):
        try:
            if subprocess.run([*args, "true"], capture_output=True, timeout=10).returncode == 0:
                return args
        except (OSError, subprocess.SubprocessError):
            continue
    return ()


def _limits(*, cpu_seconds: int, memory_mb: int) -> None:
    import resource

    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setsid()


def run_sandboxed(program: str, *, timeout_s: float = 10.0, memory_mb: int = 512) -> SandboxResult:
    """Run ``program`` (Python source) in a limited child process.

    Args:
        program: the code to run; exit status 0 means it passed (a failing assert exits 1).
        timeout_s: wall-clock limit (the CPU limit is the same, rounded up).
        memory_mb: address-space limit of the child.
    """
    prefix = network_namespace_prefix()
    with tempfile.TemporaryDirectory(prefix="sandbox-") as folder:
        path = os.path.join(folder, "main.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(_NO_NETWORK + "\n" + program)
        command = [*prefix, sys.executable, "-I", "-B", path]
        try:
            run = subprocess.run(command, cwd=folder, env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
                                 capture_output=True, text=True, timeout=timeout_s,
                                 preexec_fn=functools.partial(_limits, cpu_seconds=max(1, int(timeout_s + 0.999)),
                                                              memory_mb=memory_mb))
        except subprocess.TimeoutExpired as exc:
            return SandboxResult(False, "timeout", None, _text(exc.stdout), _text(exc.stderr), bool(prefix))
    if run.returncode == 0:
        reason = "ok"
    else:
        # the CPU limit (SIGXCPU) is the time limit's other half: whichever fires first, the program ran too long
        if run.returncode == -signal.SIGXCPU:
            reason = "timeout"
        else:
            reason = "killed" if run.returncode < 0 or "MemoryError" in run.stderr else "failed"
    return SandboxResult(run.returncode == 0, reason, run.returncode, run.stdout[-4000:], run.stderr[-4000:],
                         bool(prefix))


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return (value.decode(errors="replace") if isinstance(value, bytes) else value)[-4000:]
