"""A week whose inputs shrank: landing files removed (or moved to their correct week) after it was published.

The dedup index holds every hash a published week held. If the week no longer holds some of them, the
index would keep claiming them, and later weeks would drop records as duplicates of a week that no
longer has them. So re-publishing a week whose inputs lost files is refused (``InputsRemoved``, the
message says what to run), unless the removal is accepted (``python -m pipelines ingest
--accept-removed-inputs``, audited in the commit record). Accepting it re-decides the released hashes:

1. released = hashes of the previous version's signature set that the new one lacks;
2. they are removed from the index (``dedup.purge.remove_hashes``), then every other committed
   partition's own signature entries for them are added back (what an in-order run would hold);
3. later partitions that hold a released hash are returned for re-publication (their kept sets and
   ``first_seen`` days may change), so the end state is the one of running the shrunk inputs in order.

A partition's signature set (hash, first arrival day in it) is read from its committed version: the kept
rows (``content_sha256``, ``arrival_date``) and the duplicates (``content_sha256``, the date folder of
``source_uri``), so stores written before this module need no migration.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

from pipelines.config import PipelineConfig
from pipelines.dedup.index import ENTRY, merge_min
from pipelines.dedup.purge import remove_hashes
from pipelines.partition import Interval, day_number
from pipelines.publish import latest_commit, partition_names, partition_prefix, read_version_table
from pipelines.serialize import get_json, get_jsonl
from pipelines.storage import NotFound, ObjectStore
from pipelines.weekly.layout import PartitionRef, hash_index

ACCEPT_FLAG = "--accept-removed-inputs"
_DATE_FOLDER = re.compile(r"/(\d{4}-\d{2}-\d{2})/")


class InputsRemoved(RuntimeError):
    """A week's inputs lost files since its published version, and the removal was not accepted."""


def removed_inputs(previous_inputs: list[dict], inputs: list[dict]) -> list[str]:
    """Landing keys the previous version read that this run does not read (removed or moved away).

    A file rewritten in place is not a removal: the erasure purge (``pipelines.security.purge``) does
    that and removes the purged hashes from the index itself.
    """
    now = {i["key"] for i in inputs}
    return sorted(i["key"] for i in previous_inputs if i["key"] not in now)


def refuse_message(part: PartitionRef, version: str, lost: list[str]) -> str:
    shown = ", ".join(lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
    return (f"{part.domain} {part.interval.name}: {len(lost)} input file(s) of the published version {version} are "
            f"gone ({shown}); the dedup index still holds their records, so later weeks would drop them "
            f"as duplicates. Restore the files, or, if the removal is intended, run: python -m pipelines ingest "
            f"--interval {part.interval.name} --domain {part.domain} {ACCEPT_FLAG} --who <you> "
            f"(docs/RUNBOOK.md, 'Remove or move a landing file')")


def version_signatures(store: ObjectStore, prefix: str, version: str) -> np.ndarray:
    """The signature set (hash, first day in the partition) of a committed version of the partition at ``prefix``."""
    manifest = get_json(store, f"{prefix}/v-{version}/manifest.json")
    table = read_version_table(store, manifest, columns=["content_sha256", "arrival_date"])
    hashes = [bytes.fromhex(h) for h in table.column("content_sha256").to_pylist()]
    days = [day_number(d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)))
            for d in table.column("arrival_date").to_pylist()]
    try:
        duplicates = get_jsonl(store, manifest["files"]["duplicates"])
    except NotFound:
        duplicates = []
    for row in duplicates:
        found = _DATE_FOLDER.search(row["source_uri"])
        if found:
            hashes.append(bytes.fromhex(row["content_sha256"]))
            days.append(day_number(dt.date.fromisoformat(found.group(1))))
    entries = np.empty(len(hashes), dtype=ENTRY)
    entries["h"] = np.array(hashes, dtype="S32") if hashes else np.empty(0, "S32")
    entries["d"] = days
    return merge_min([entries])


def release_hashes(config: PipelineConfig, store: ObjectStore, part: PartitionRef, released: np.ndarray) -> list[dict]:
    """Re-decide hashes this partition no longer holds (see the module docstring); return the later
    partitions to re-publish."""
    if not len(released):
        return []
    index = hash_index(config, store, part.domain)
    packed = np.ascontiguousarray(released, dtype="S32").tobytes()
    remove_hashes(index, [packed[i:i + 32] for i in range(0, len(packed), 32)])
    targets = []
    for name in partition_names(store, config.storage.curated_prefix, part.domain):
        if name == part.interval.name:
            continue
        prefix = partition_prefix(config.storage.curated_prefix, part.domain, name)
        commit = latest_commit(store, prefix)
        if commit is None:
            continue
        theirs = version_signatures(store, prefix, commit.version)
        held = theirs[np.isin(theirs["h"], released)]
        if not len(held):
            continue
        index.add(held, tag=Interval.parse(name).start.isoformat())  # what the index would hold in order
        if Interval.parse(name).start >= part.interval.end:
            targets.append({"domain": part.domain, "interval": name,
                            "why": f"records it holds are no longer in {part.interval.name} (inputs removed)"})
    return targets
