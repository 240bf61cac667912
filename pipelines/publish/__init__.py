"""Curated partitions: immutable, content-addressed versions made visible by a numbered commit record.

Layout::

    curated/<domain>/<interval>/v-<version>/data.parquet       the records (datasets.load_dataset("parquet"))
    curated/<domain>/<interval>/v-<version>/data/part-<k>.parquet  ... or, above ingest.max_object_bytes, in parts
    curated/<domain>/<interval>/v-<version>/manifest.json      counts, reasons, digests, schema/suite versions
    curated/<domain>/<interval>/_commits/<n:08d>.json          commit record, written create-only, LAST
    quarantine/<domain>/<interval>/v-<version>/quarantine.jsonl  rejected records/files with reasons
    quarantine/<domain>/<interval>/v-<version>/duplicates.jsonl  dropped duplicates with reasons

A reader resolves the newest commit record and reads the version it names, so it never sees a
partial partition. ``version`` is a digest of the data, quarantine and duplicate files, so
re-publishing unchanged inputs produces the same bytes under the same key and no new commit.
A version's data is one ``data.parquet`` or, when larger than ``ingest.max_object_bytes``, several part
files listed in order in the manifest's ``data_parts`` (``version_data_keys``); versions written before
parts existed are single files and read as before.
(The byte encodings themselves live in ``pipelines.serialize``; what a partition version holds is
written by ``pipelines.weekly.publish``.)
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass

# sha256_hex is re-exported for the modules that still import it from here (pipelines.finetune).
from pipelines.serialize import canonical_json, read_parquet_rows, sha256_hex  # noqa: F401
from pipelines.safepath import check_segment
from pipelines.storage import NotFound, ObjectStore

COMMITS = "_commits"


@dataclass(frozen=True)
class Commit:
    n: int
    key: str
    record: dict

    @property
    def version(self) -> str:
        return self.record["version"]


def partition_prefix(curated_prefix: str, domain: str, interval_name: str) -> str:
    return f"{curated_prefix}/{domain}/{interval_name}"


def latest_commit(store: ObjectStore, prefix: str) -> Commit | None:
    """The newest commit record of a partition, or None if it was never published.

    Raises:
        pipelines.safepath.UnsafeName: the record's ``version`` is not a single safe name.
    """
    keys = [o.key for o in store.list(f"{prefix}/{COMMITS}/") if o.key.endswith(".json")]
    if not keys:
        return None
    key = max(keys)
    record = json.loads(store.get(key))
    # The version is spliced into keys (v-<version>/data.parquet): a crafted record must not reach another prefix.
    check_segment(record.get("version") if isinstance(record, dict) else None)
    return Commit(n=int(key.rsplit("/", 1)[-1][:-5]), key=key, record=record)


def commit_version(store: ObjectStore, prefix: str, record: dict) -> Commit:
    """Append a commit record (create-only, numbered). Concurrent committers each get their own number."""
    while True:
        latest = latest_commit(store, prefix)
        n = latest.n + 1 if latest else 1
        body = dict(record, n=n)
        key = f"{prefix}/{COMMITS}/{n:08d}.json"
        if store.put(key, canonical_json(body), if_none_match=True):
            return Commit(n=n, key=key, record=body)


def partition_names(store: ObjectStore, curated_prefix: str, domain: str) -> list[str]:
    """Interval names of a domain's partition folders (one LIST per 1000 partitions)."""
    return [folder.rstrip("/").rsplit("/", 1)[-1] for folder in store.list_dirs(f"{curated_prefix}/{domain}/")]


def list_partitions(store: ObjectStore, curated_prefix: str, domain: str) -> list[str]:
    """Interval names of a domain's partitions that have at least one commit."""
    names = []
    for name in partition_names(store, curated_prefix, domain):
        folder = f"{curated_prefix}/{domain}/{name}/"
        try:
            next(iter(store.list(f"{folder}{COMMITS}/")))
        except StopIteration:
            continue
        names.append(name)
    return names


def version_data_keys(manifest: Mapping) -> list[str]:
    """The data files of a version, in order: its part files, or its one ``files.data``."""
    parts = manifest.get("data_parts")
    return [p["key"] for p in parts] if parts else [manifest["files"]["data"]]


def read_version_table(store: ObjectStore, manifest: Mapping, *, columns: list[str] | None = None):
    """Some columns of a version's data, every part (a ``pyarrow.Table``; pass few columns for big versions)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(io.BytesIO(store.get(key)), columns=columns) for key in version_data_keys(manifest)]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def read_version_rows(store: ObjectStore, prefix: str, version: str) -> list[dict]:
    """Every row of a version of the partition at ``prefix``: its ``data.parquet``, or its part files.

    Raises:
        NotFound: the version has neither.
    """
    try:
        return read_parquet_rows(store.get(f"{prefix}/v-{version}/data.parquet"))
    except NotFound:
        manifest = json.loads(store.get(f"{prefix}/v-{version}/manifest.json"))
        if not manifest.get("data_parts"):
            raise
        return read_version_table(store, manifest).to_pylist()


def read_committed_rows(store: ObjectStore, prefix: str) -> tuple[Commit, list[dict]] | None:
    commit = latest_commit(store, prefix)
    if commit is None:
        return None
    try:
        return commit, read_version_rows(store, prefix, commit.version)
    except NotFound:
        raise RuntimeError(f"{commit.key} names version {commit.version} but its data is missing") from None
