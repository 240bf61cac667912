"""Read a repository snapshot (tar, tar.gz, zip of a tree, or a git bundle) into its files.

Pure logic over bytes, except a git bundle, which is cloned by the ``git`` CLI into a temporary folder.
Archive members are never extracted to disk: names with ``..``, absolute paths, links and devices are
skipped (and counted), so a hostile archive cannot write outside anything or point at host files.
"""

from __future__ import annotations

import io
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

SNAPSHOT_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip", ".bundle")


class SnapshotError(ValueError):
    """The archive cannot be read as a whole (corrupt, unknown format, too large)."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a snapshot: its path inside the tree (POSIX, no leading ``./``) and bytes."""

    path: str
    data: bytes


def is_snapshot(key: str) -> bool:
    """Whether an object key names a snapshot archive (by its suffix)."""
    name = key.rsplit("/", 1)[-1].lower()
    return name.endswith(SNAPSHOT_SUFFIXES)


def repository_of(key: str) -> str:
    """The repository a snapshot holds, from its file name: ``landing/code/<date>/billing.tar.gz`` -> ``billing``."""
    name = key.rsplit("/", 1)[-1]
    for suffix in sorted(SNAPSHOT_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def _clean_path(name: str) -> str | None:
    path = posixpath.normpath(name.replace("\\", "/")).lstrip("/")
    if path in ("", ".") or path.startswith("../") or path == ".." or name.startswith("/"):
        return None
    return path


def read_snapshot(key: str, data: bytes, *, max_total_bytes: int = 1 << 30) -> tuple[list[SourceFile], int]:
    """The regular files of a snapshot, sorted by path, and how many members were skipped (links, unsafe names).

    Raises:
        SnapshotError: the archive is corrupt, of no known format, or expands past ``max_total_bytes``.
    """
    name = key.rsplit("/", 1)[-1].lower()
    try:
        if name.endswith(".zip"):
            files, skipped = _read_zip(data, max_total_bytes)
        elif name.endswith(".bundle"):
            files, skipped = _read_bundle(data, max_total_bytes)
        elif name.endswith((".tar", ".tar.gz", ".tgz")):
            files, skipped = _read_tar(data, max_total_bytes)
        else:
            raise SnapshotError(f"unknown snapshot format; use one of {SNAPSHOT_SUFFIXES}")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise SnapshotError(f"unreadable archive: {exc}") from None
    return sorted(files, key=lambda f: f.path), skipped


def _budget(total: int, size: int, limit: int) -> int:
    total += size
    if total > limit:
        raise SnapshotError(f"expands past {limit} bytes (ingest.max_file_bytes); split the snapshot")
    return total


def _read_tar(data: bytes, limit: int) -> tuple[list[SourceFile], int]:
    files, skipped, total = [], 0, 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            if member.isdir():
                continue
            path = _clean_path(member.name)
            if not member.isfile() or path is None:
                skipped += 1
                continue
            total = _budget(total, member.size, limit)
            handle = tar.extractfile(member)
            files.append(SourceFile(path, handle.read() if handle else b""))
    return files, skipped


def _read_zip(data: bytes, limit: int) -> tuple[list[SourceFile], int]:
    files, skipped, total = [], 0, 0
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            path = _clean_path(info.filename)
            is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
            if path is None or is_link:
                skipped += 1
                continue
            total = _budget(total, info.file_size, limit)
            files.append(SourceFile(path, zf.read(info)))
    return files, skipped


def _read_bundle(data: bytes, limit: int) -> tuple[list[SourceFile], int]:
    """Clone the bundle's HEAD with the ``git`` CLI (no hooks, no network) and read its tracked files."""
    git = shutil.which("git")
    if git is None:
        raise SnapshotError("a git bundle needs the git CLI on the ingest host; or land a tar/zip of the tree")
    with tempfile.TemporaryDirectory(prefix="code-bundle-") as tmp:
        bundle = Path(tmp) / "snapshot.bundle"
        bundle.write_bytes(data)
        tree = Path(tmp) / "tree"
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "HOME": tmp, "PATH": "/usr/bin:/bin"}
        run = subprocess.run([git, "clone", "--quiet", "--no-checkout", "-c", "core.hooksPath=/dev/null",
                              str(bundle), str(tree)], capture_output=True, text=True, env=env, timeout=120)
        if run.returncode != 0:
            raise SnapshotError(f"git clone of the bundle failed: {run.stderr.strip()[:500]}")
        listing = subprocess.run([git, "-C", str(tree), "ls-tree", "-r", "-z", "HEAD"], capture_output=True,
                                 env=env, timeout=120)
        if listing.returncode != 0:
            raise SnapshotError(f"git ls-tree failed: {listing.stderr.decode(errors='replace')[:500]}")
        files, skipped, total = [], 0, 0
        for entry in (e for e in listing.stdout.split(b"\0") if e):
            meta, _, raw_path = entry.partition(b"\t")
            mode, kind, sha = meta.decode().split()
            path = _clean_path(raw_path.decode("utf-8", errors="replace"))
            if kind != "blob" or mode == "120000" or path is None:
                skipped += 1
                continue
            blob = subprocess.run([git, "-C", str(tree), "cat-file", "blob", sha], capture_output=True, env=env,
                                  timeout=120).stdout
            total = _budget(total, len(blob), limit)
            files.append(SourceFile(path, blob))
        return files, skipped

