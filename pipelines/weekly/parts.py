"""Staged data held as several objects: a sharded week's rows stay where each shard wrote them.

From ``govern_shard`` on, each shard's rows, rejections and reports stay in its own staging
(``shard-<k>/``); the partition's staging names them with ``<name>.parts.json``, the list of the objects
that hold ``<name>`` in order (``filtered.parquet.parts.json``: every shard's ``filtered.parquet``).
A reader that asks for ``<name>`` gets its parts (``staged_parts``), or ``<name>`` itself for a week of
one shard, whose steps write the partition's own names. Nothing is rewritten as one object: a step
works on a part at a time, in parallel where the DAG maps it over the shards.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.serialize import get_json, put_json
from pipelines.storage import NotFound, ObjectStore

PARTS_SUFFIX = ".parts.json"


def sibling(key: str, name: str) -> str:
    """The object ``name`` in the folder of ``key`` (a part's own report, rejections, next output)."""
    return f"{key.rpartition('/')[0]}/{name}"


def staged_parts(store: ObjectStore, key: str) -> list[str]:
    """The objects that hold the staged ``key``, in order: those ``<key>.parts.json`` lists, else ``key``."""
    try:
        return list(get_json(store, key + PARTS_SUFFIX)["parts"])
    except NotFound:
        return [key]


def name_parts(store: ObjectStore, key: str, parts: Sequence[str]) -> None:
    """Make ``parts`` (in order) what ``key`` is made of; nothing to name when ``key`` is its only part."""
    if list(parts) != [key]:
        put_json(store, key + PARTS_SUFFIX, {"parts": list(parts)})
