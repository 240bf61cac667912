"""Object storage, injected into every step: the same step runs on a folder, SeaweedFS or AWS S3.

Only two write primitives are used by the pipeline, both available on S3 and SeaweedFS:
``put`` (last writer wins, for content-addressed keys whose bytes are a function of their name)
and ``put(if_none_match=True)`` (create-only, for commit records, index segments and ledger
entries). Nothing relies on ``If-Match`` read-modify-write.

Identities: each component may run under its own least-privilege S3 identity (docs/SECURITY.md). A
component names itself (``open_store(config, identity="serving")``, or ``PIPELINE_S3_IDENTITY=serving``
in its environment) and its credentials are read from
``$PIPELINE_S3_IDENTITIES_DIR/<identity>/credentials.env`` (``pipelines.identities``, mode 600). Without that folder the usual boto3 chain applies
(``AWS_ACCESS_KEY_ID``...), i.e. one identity for everything, as before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

# The interface lives one floor down (pipelines.store_protocol) so that the encryption wrapper implements it
# without importing this module; it is re-exported here, where every step imports it from.
from pipelines.identities import COMPONENTS, credentials_path, read_credentials
from pipelines.store_protocol import NotFound, ObjectInfo, ObjectStore, StorageError

if TYPE_CHECKING:
    from pipelines.config import PipelineConfig, StorageConfig

__all__ = ["LocalObjectStore", "NotFound", "ObjectInfo", "ObjectStore", "S3ObjectStore", "StorageError", "get_file",
           "get_range", "open_store", "put_file"]

IDENTITY_ENV = "PIPELINE_S3_IDENTITY"
IDENTITIES_DIR_ENV = "PIPELINE_S3_IDENTITIES_DIR"
IDENTITIES = ("admin", *COMPONENTS)
COPY_CHUNK = 8 * 1024 * 1024
MULTIPART_BYTES = 64 * 1024 * 1024


def _hard_link(source: str | Path, target: str | Path) -> bool:
    """Link ``target`` to ``source``'s data (no copy, no extra disk); False where the file system cannot."""
    if os.path.lexists(target):
        os.unlink(target)
    try:
        os.link(source, target)
    except OSError:
        return False
    return True


class LocalObjectStore:
    """A folder that behaves like a bucket (atomic puts, create-only puts, sorted listing)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"invalid object key {key!r}")
        return self.root / key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None

    def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            if if_none_match:
                try:
                    os.link(tmp, path)  # atomic create-only
                except FileExistsError:
                    return False
                return True
            os.replace(tmp, path)
            return True
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_file(self, key: str, path: str | Path) -> None:
        """Store the file at ``path`` under ``key``: hard-linked (or copied in chunks across file systems), then
        renamed into place (atomic, bounded memory, no second copy on disk). The caller must not write to
        ``path`` afterwards (the pipeline only deletes its local files)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            os.close(fd)
            if not _hard_link(path, tmp):  # another file system: copy in chunks
                with open(tmp, "wb") as out, open(path, "rb") as src:
                    shutil.copyfileobj(src, out, COPY_CHUNK)
            os.chmod(tmp, 0o600)  # as put's objects (mkstemp's mode)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get_file(self, key: str, path: str | Path) -> None:
        """The object at ``key`` as the local file ``path`` (a hard link where possible, else a chunked copy)."""
        source = self._path(key)
        if not source.is_file():
            raise NotFound(key)
        if os.path.lexists(path):
            os.unlink(path)
        if _hard_link(source, path):  # objects are replaced, never written in place: a link is a snapshot
            return
        try:
            with open(source, "rb") as src, open(path, "wb") as out:
                shutil.copyfileobj(src, out, COPY_CHUNK)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object at ``key`` (fewer where the object is shorter): a seek and a read."""
        _check_range(start, end)
        try:
            with open(self._path(key), "rb") as fh:
                fh.seek(start)
                return fh.read(end - start)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        # Walk only the folder that holds the prefix (not the whole store: the index lists per bucket).
        folder = prefix.rpartition("/")[0]
        found = []
        stack = [(os.path.join(self.root, folder) if folder else str(self.root), f"{folder}/" if folder else "")]
        while stack:
            path, head = stack.pop()
            try:
                entries = os.scandir(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir():
                        if not entry.is_symlink():  # as os.walk: a linked folder is not descended into
                            stack.append((entry.path, f"{head}{entry.name}/"))
                        continue
                    key = head + entry.name
                    if entry.name.startswith(".tmp-") or not key.startswith(prefix) or key <= start_after:
                        continue
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:  # deleted since the folder was read
                        continue
                    found.append((key, stat.st_size, stat.st_mtime_ns))
        found.sort()
        for key, size, mtime in found:
            yield ObjectInfo(key=key, size=size, etag=f"{size}-{mtime}")

    def list_dirs(self, prefix: str) -> list[str]:
        path = self._path(prefix.rstrip("/")) if prefix else self.root
        if not path.is_dir():
            return []
        return sorted(f"{prefix}{p.name}/" for p in path.iterdir() if p.is_dir())

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri()


class S3ObjectStore:
    """An S3 bucket through boto3 (AWS S3, SeaweedFS, any S3 server with conditional writes)."""

    def __init__(self, *, bucket: str, endpoint_url: str = "", region: str = "us-east-1", client: object | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config

            keys = ({"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
                    if credentials else {})
            client = boto3.session.Session(**keys).client(
                "s3",
                endpoint_url=endpoint_url or None,
                region_name=region,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
            )
        self.client = client

    def _error(self, exc: Exception, key: str) -> Exception:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")  # None on read timeouts
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(key)
        if code == "NoSuchBucket":
            return StorageError(f"bucket {self.bucket!r} does not exist at {self.endpoint_url or 'AWS'}: run scripts/services.sh start")
        return StorageError(f"{type(exc).__name__} on s3://{self.bucket}/{key}: {exc}")

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key) from None

    def put(self, key: str, data: bytes, *, if_none_match: bool = False) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs = {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **kwargs)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if if_none_match and (status in (409, 412) or exc.response["Error"].get("Code") in ("PreconditionFailed", "ConditionalRequestConflict")):
                return False
            raise self._error(exc, key) from None
        except BotoCoreError as exc:
            raise self._error(exc, key) from None
        return True

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        # Multipart above 64 MiB, parts of 64 MiB (an 8 GiB object is 128 parts of the 10,000 allowed);
        # at most 4 parts in flight, so the memory of a transfer stays ~256 MiB whatever the object's size.
        return TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES,
                              max_concurrency=4, use_threads=True)

    def put_file(self, key: str, path: str | Path) -> None:
        """Upload the file at ``path`` to ``key`` with boto3's managed transfer (multipart for large files:
        no single PUT over 5 GB, bounded memory)."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.bucket, key, Config=self._transfer_config())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key) from None
        except S3UploadFailedError as exc:
            raise StorageError(f"upload of s3://{self.bucket}/{key} failed: {exc}") from None

    def get_file(self, key: str, path: str | Path) -> None:
        """Download ``key`` to the local file ``path`` with boto3's managed transfer (ranged, bounded memory)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.download_file(self.bucket, key, str(path), Config=self._transfer_config())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key) from None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object at ``key`` (fewer where the object is shorter): one GET with a
        ``Range`` header."""
        from botocore.exceptions import BotoCoreError, ClientError

        _check_range(start, end)
        if start == end:
            return b""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
            return response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            # A range that starts at or past the end is refused (416); the local store reads nothing there.
            if (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise self._error(exc, key) from None

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, object] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        try:
            while True:
                page = self.client.list_objects_v2(**kwargs)
                for obj in page.get("Contents", []):
                    yield ObjectInfo(key=obj["Key"], size=obj["Size"], etag=obj["ETag"].strip('"'))
                if not page.get("IsTruncated"):
                    return
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
                kwargs.pop("StartAfter", None)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, prefix) from None

    def list_dirs(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        out: list[str] = []
        kwargs: dict[str, object] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        try:
            while True:
                page = self.client.list_objects_v2(**kwargs)
                out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
                if not page.get("IsTruncated"):
                    return sorted(out)
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, prefix) from None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise self._error(exc, key) from None
        except BotoCoreError as exc:
            raise self._error(exc, key) from None

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def put_file(store: ObjectStore, key: str, path: str | Path) -> None:
    """Store a local file under ``key`` without holding it in memory where the store can stream
    (``LocalObjectStore`` copies, ``S3ObjectStore`` uploads multipart); a store without ``put_file``
    (the encryption wrapper, on the keys it encrypts) is given the bytes."""
    streaming = getattr(store, "put_file", None)
    inner = getattr(store, "inner", None)
    if streaming is None and inner is not None and hasattr(store, "encrypts") and not store.encrypts(key):
        streaming = getattr(inner, "put_file", None)  # a key the wrapper passes through as it is
    if streaming is not None:
        streaming(key, path)
    else:
        store.put(key, Path(path).read_bytes())


def get_file(store: ObjectStore, key: str, path: str | Path) -> None:
    """Write the object at ``key`` to a local file (streamed where the store can, see ``put_file``).

    Raises:
        NotFound: no object at ``key``.
    """
    streaming = getattr(store, "get_file", None)
    inner = getattr(store, "inner", None)
    if streaming is None and inner is not None and hasattr(store, "encrypts") and not store.encrypts(key):
        streaming = getattr(inner, "get_file", None)
    if streaming is not None:
        streaming(key, path)
    else:
        Path(path).write_bytes(store.get(key))


def get_range(store: ObjectStore, key: str, start: int, end: int) -> bytes | None:
    """Bytes ``[start, end)`` of the object at ``key``, or None where the store cannot read a range (the
    encryption wrapper, on the keys it encrypts: the caller then reads the whole object).

    Raises:
        NotFound: no object at ``key``.
    """
    ranged = getattr(store, "get_range", None)
    inner = getattr(store, "inner", None)
    if ranged is None and inner is not None and hasattr(store, "encrypts") and not store.encrypts(key):
        ranged = getattr(inner, "get_range", None)
    return None if ranged is None else ranged(key, start, end)


def _check_range(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise ValueError(f"byte range [{start}, {end}) is invalid: give 0 <= start <= end (end is exclusive)")


def identity_credentials(identity: str | None = None) -> tuple[str, str] | None:
    """The ``(access key, secret key)`` of a component's own S3 identity, or None for the default chain.

    ``identity`` (or ``$PIPELINE_S3_IDENTITY``) names the component; its credentials are the
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` lines of
    ``$PIPELINE_S3_IDENTITIES_DIR/<identity>/credentials.env``.
    A component that names itself in code runs under the default chain when no such folder is configured
    (one identity for everything, as before); an identity asked for in the environment must exist.

    Raises:
        StorageError: an unknown identity, or one asked for whose credentials file is missing or incomplete.
    """
    from_env = os.environ.get(IDENTITY_ENV, "").strip()
    name = from_env or identity
    folder = os.environ.get(IDENTITIES_DIR_ENV, "").strip()
    if not name or (not folder and not from_env):
        return None
    if name not in IDENTITIES:
        raise StorageError(f"{IDENTITY_ENV}={name!r} is not an S3 identity; use one of {', '.join(IDENTITIES)}")
    if not folder:
        raise StorageError(f"{IDENTITY_ENV}={name} but {IDENTITIES_DIR_ENV} is not set: point it at the folder of "
                           "<identity>.env files (scripts/services.sh writes .local/identities/)")
    path = credentials_path(folder, name)
    try:
        pair = read_credentials(path)
    except FileNotFoundError:
        if name == "admin":
            return None  # the admin identity is the default chain (credentials.env)
        raise StorageError(f"no credentials for S3 identity {name!r}: {path} does not exist; start the store with "
                           "scripts/services.sh start seaweedfs (it generates them)") from None
    if pair is None:
        raise StorageError(f"{path} lacks AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; remove it and restart the store")
    return pair


def open_store(config: StorageConfig | PipelineConfig, *, identity: str | None = None) -> ObjectStore:
    """Open the configured store: ``file:///path`` endpoints give a local folder, anything else S3.

    ``identity`` names the calling component (``serving``, ``ingestion``, ``training``, ``console``,
    ``admin``): with per-component credentials configured (``identity_credentials``) the S3 store acts
    as that identity, which the server limits to what the component needs.

    Given the whole ``PipelineConfig``, the store is wrapped in client-side envelope encryption when
    ``security.enabled`` is true (``pipelines.security``): every stage then reads and writes through it.
    """
    storage = getattr(config, "storage", config)
    if storage.endpoint_url.startswith("file://"):
        store: ObjectStore = LocalObjectStore(Path(storage.endpoint_url[len("file://"):]) / storage.bucket)
    else:
        store = S3ObjectStore(bucket=storage.bucket, endpoint_url=storage.endpoint_url, region=storage.region,
                              credentials=identity_credentials(identity))
    if storage is not config and config.security.enabled:
        from pipelines.security.envelope import wrap_store

        store = wrap_store(store, config.security)
    return store
