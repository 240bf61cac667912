"""The object-store interface every step is written against: the protocol, its record and its errors.

The floor below ``pipelines.storage`` (which implements it for a folder and S3) and
``pipelines.security.envelope`` (which wraps any implementation in encryption): both import it,
neither imports the other's module at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol


class StorageError(RuntimeError):
    """The object store could not be reached or refused a request."""


class NotFound(KeyError):
    """The key does not exist."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str


class ObjectStore(Protocol):
    """The operations the pipeline needs from an object store."""

    def get(self, key: str) -> bytes: ...

    def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        """Write ``data``; with ``if_none_match`` return False instead of overwriting."""
        ...

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]: ...

    def list_dirs(self, prefix: str) -> list[str]:
        """Immediate 'sub-folders' of ``prefix`` (which must end with '/'), as full prefixes."""
        ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def uri(self, key: str) -> str: ...
