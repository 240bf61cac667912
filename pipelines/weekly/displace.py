"""Backfill displacement: after a commit, which partitions' kept sets may now be stale.

Dedup keeps a record in the earliest week it arrived. When an earlier week is (re)published after
later ones, records the later weeks kept now belong to it: those later partitions are listed here and
re-published by ``flow.republish_displaced``.
"""

from __future__ import annotations

import numpy as np

from pipelines.config import PipelineConfig
from pipelines.dedup.index import decode_segment
from pipelines.partition import Interval, day_number
from pipelines.publish import latest_commit, partition_names, partition_prefix
from pipelines.storage import ObjectStore
from pipelines.weekly.layout import PartitionRef, hash_index


def kept_hashes(kept: np.ndarray) -> bytes:
    """Sorted kept content hashes (32 bytes each): what a backfill of an earlier week checks against.

    ``kept``: the kept records' hashes, an ``S32`` array (``hash_array`` of their ``content_sha256``).
    """
    return np.sort(kept).tobytes()


def hash_array(hex_digests) -> np.ndarray:
    """``S32`` array of hex SHA-256 digests (a list or a pyarrow string array)."""
    if not len(hex_digests):
        return np.empty(0, "S32")
    joined = "".join(hex_digests.to_pylist() if hasattr(hex_digests, "to_pylist") else hex_digests)
    return np.frombuffer(bytes.fromhex(joined), dtype="S32")


def find_displaced(config: PipelineConfig, store: ObjectStore, part: PartitionRef, kept: np.ndarray,
                   signatures: bytes) -> list[dict]:
    """After committing, list the partitions whose kept set may now be stale.

    * Later committed partitions that kept a hash this partition holds (an earlier week ingested
      after later ones, i.e. a backfill): found by intersecting with their ``hashes.bin``. Forward
      weekly runs have no later partitions, so this costs nothing on the normal path.
    * This partition itself, if the index now shows an earlier owner for a hash it kept (a concurrent
      run of an earlier week added its signatures after our lookup).
    Every run adds its signatures before this check, so of two concurrent runs at least one sees the
    other: a displaced partition is always found by someone.
    """
    targets = []
    if len(kept):
        index = hash_index(config, store, part.domain)
        if (index.lookup(kept) < day_number(part.interval.start)).any():
            targets.append({"domain": part.domain, "interval": part.interval.name,
                            "why": "an earlier partition now owns some records"})
    mine = decode_segment(signatures)["h"]
    for name in partition_names(store, config.storage.curated_prefix, part.domain):
        interval = Interval.parse(name)
        if interval.start < part.interval.end:
            continue
        prefix = partition_prefix(config.storage.curated_prefix, part.domain, name)
        commit = latest_commit(store, prefix)
        if commit is None:
            continue
        theirs = np.frombuffer(store.get(f"{prefix}/v-{commit.version}/hashes.bin"), dtype="S32")
        if len(theirs) and np.isin(mine, theirs).any():
            targets.append({"domain": part.domain, "interval": name,
                            "why": f"some of its records first arrived in {part.interval.name}"})
    return targets
