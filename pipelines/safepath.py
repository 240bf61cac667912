"""Names read from the object store, checked before they become local paths.

A manifest in the store (an artifact's ``files``, a labeller's ``CURRENT.json``, a curated commit's
``version``) is written by whoever can write that prefix, so every name in it is untrusted input. A name
becomes a local path only through :func:`safe_member_path`, and a whole listing is checked with
:func:`check_member_names` before the first byte is written: a refused name leaves the destination as it was.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

MAX_NAME_BYTES = 1024   # a whole relative name, UTF-8 (PATH_MAX is 4096; the destination needs room too)
MAX_SEGMENT_BYTES = 255  # one path segment, UTF-8 (NAME_MAX of ext4, xfs, btrfs, APFS, NTFS)
MAX_DEPTH = 32
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
# Windows device names are refused everywhere: a cache folder may be copied or mounted from such a host.
_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))})


class UnsafeName(ValueError):
    """A name read from the object store cannot safely become a local path (``name`` is the offending one)."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


def _refuse(name: object, why: str) -> UnsafeName:
    return UnsafeName(f"unsafe file name {name!r} in an object-store manifest: {why}; the manifest was written by "
                      "someone who may not write it (see docs/SECURITY.md), nothing was written locally",
                      name=str(name))


def check_member_name(name: object) -> str:
    """Return ``name`` if it is a safe relative POSIX path, else raise :class:`UnsafeName`.

    Safe means: a non-empty ``str`` of at most ``MAX_NAME_BYTES`` UTF-8 bytes and ``MAX_DEPTH`` segments,
    no NUL or control character, no backslash, no drive (``C:``), not absolute, and no segment that is
    empty, ``.``, ``..``, longer than ``MAX_SEGMENT_BYTES``, ends in a dot or space, or is a Windows device
    name. Pure string logic: nothing on disk is looked at.
    """
    if not isinstance(name, str):
        raise _refuse(name, "not a string")
    if not name:
        raise _refuse(name, "empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise _refuse(name, "NUL or control character")
    if "\\" in name:
        raise _refuse(name, "backslash (a Windows separator)")
    if name.startswith("/"):
        raise _refuse(name, "absolute path")
    if _DRIVE_RE.match(name):
        raise _refuse(name, "drive letter")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(name, "not valid UTF-8 (lone surrogate)") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise _refuse(name[:64] + "...", f"longer than {MAX_NAME_BYTES} bytes ({len(encoded)})")
    segments = name.split("/")
    if len(segments) > MAX_DEPTH:
        raise _refuse(name, f"deeper than {MAX_DEPTH} folders")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise _refuse(name, f"segment {segment!r} (empty, '.' or '..')")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _refuse(name[:64] + "...", f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")
        if segment[-1] in ". ":
            raise _refuse(name, f"segment {segment!r} ends in a dot or space")
        if segment.split(".", 1)[0].lower() in _RESERVED:
            raise _refuse(name, f"segment {segment!r} is a reserved device name")
    return name


def check_segment(name: object) -> str:
    """Return ``name`` if it is one safe path segment (:func:`check_member_name` without ``/``).

    For names that a manifest splices into an object key or a local folder name (a curated commit's
    ``version``, a labeller's version), where a ``/`` would reach another prefix.
    """
    check_member_name(name)
    if "/" in str(name):
        raise _refuse(name, "a single name was expected, not a path")
    return str(name)


def _fold(name: str) -> str:
    # Equal after folding = the same file on a case-insensitive or normalising file system (APFS, NTFS).
    return unicodedata.normalize("NFC", name).casefold()


def check_member_names(names: Iterable[object]) -> list[str]:
    """Check every name of a listing (:func:`check_member_name`) and that no two collide; sorted.

    Two names collide when they are equal after Unicode NFC normalisation and case folding, or when one
    is a folder of the other (``a`` and ``a/b``): written one after the other, the second would replace or
    land inside the first.

    Raises:
        UnsafeName: the first unsafe or colliding name.
    """
    checked = sorted(check_member_name(name) for name in names)
    folded: dict[str, str] = {}
    for name in checked:
        key = _fold(name)
        if key in folded:
            raise _refuse(name, f"duplicate of {folded[key]!r} (equal after case folding / normalisation)")
        folded[key] = name
    for key, name in folded.items():
        parts = key.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in folded:
                raise _refuse(name, f"lies inside {folded[parent]!r}, which is also a file")
    return checked


def safe_member_path(dest: str | Path, name: object) -> Path:
    """The local path of object-store name ``name`` inside folder ``dest``, or :class:`UnsafeName`.

    Beyond :func:`check_member_name`, the path is resolved with the symlinks that already exist under
    ``dest`` (e.g. a link planted in a cache folder) and must stay inside ``dest``; an existing symlink
    on the way is refused outright, since the file would be written through it.
    """
    check_member_name(name)
    dest = Path(dest)
    path = dest.joinpath(*str(name).split("/"))
    current = dest
    for segment in str(name).split("/"):
        current = current / segment
        if current.is_symlink():
            raise _refuse(name, f"{current} is a symbolic link (it would redirect the write)")
    root = os.path.realpath(dest)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise _refuse(name, f"resolves outside {dest}")
    return path
