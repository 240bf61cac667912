"""What each step hands to the next: the key it wrote and its counts (frozen, JSON-able via ``to_dict``).

The DAG passes ``to_dict()`` through XCom and the next task reads its input from ``key``; large data
never travels through XCom. The same dict is the step's staged report (``<step>.json``), from which
``publish_partition`` builds the manifest's ``steps`` and counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def _without_none(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v is not None}


@dataclass(frozen=True)
class IngestResult:
    """``ingest_landing``: the parsed records of the interval (``key``: raw.jsonl) and the files read.

    ``shards``: a week of more than ``ingest.shard_records`` records: the raw.jsonl of each shard, in
    order (``key`` is the first); empty when the week is one partition-wide chain.
    """

    key: str
    domain: str
    interval: str
    run_key: str
    inputs: Sequence[Mapping[str, Any]]
    files: Mapping[str, int]
    records_in: int
    parsed: int
    rejected: int
    seconds: float
    misplaced: Sequence[str] = ()  # landing keys outside any <YYYY-MM-DD>/ folder: reported, not read
    releases: Sequence[Mapping[str, Any]] = ()  # release requests executed before listing (pipelines.release_requests)
    shards: Sequence[str] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "inputs": [dict(i) for i in self.inputs], "files": dict(self.files),
                "misplaced": list(self.misplaced), "releases": [dict(r) for r in self.releases],
                "shards": list(self.shards)}


@dataclass(frozen=True)
class StepResult:
    """One read-apply-write step of the chain: ``key`` holds the rows it kept (the next step's input).

    ``step`` names its report in staging and in the manifest's ``steps``; ``extra`` holds what only this
    step reports (dedup: ``duplicate``, ``displaced``, ``index``; auto_label: ``labeller``; ...).
    """

    step: str
    key: str
    rows_in: int
    kept: int
    rejected: int
    counts: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "key": self.key, "in": self.rows_in, "kept": self.kept, "rejected": self.rejected,
                "counts": dict(self.counts), **self.extra, "seconds": self.seconds}


@dataclass(frozen=True)
class ValidationResult:
    """``validate_batch``: ``key`` is the batch that passed the suite (what ``publish_partition`` publishes)."""

    key: str
    success: bool
    rows: int
    report: str  # staged validation report (the suite's result, read by publish_partition)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none(asdict(self))


@dataclass(frozen=True)
class PublishResult:
    """``publish_partition``: the committed version (or why nothing was committed) and the partitions
    this commit displaced (``republish``, for ``republish_displaced``)."""

    published: bool
    domain: str
    interval: str
    republish: Sequence[Mapping[str, str]] = ()
    reason: str | None = None
    version: str | None = None
    commit: str | None = None  # key of the commit record
    counts: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _without_none({**asdict(self), "republish": [dict(t) for t in self.republish]})


@dataclass(frozen=True)
class FeedbackRouted:
    """``route_feedback``: feedback lines per domain, and what reached none (written to ``quarantine``)."""

    interval: str
    routed: Mapping[str, int]
    quarantined: int
    quarantine: str
    reasons: Mapping[str, int]
    misplaced: Sequence[str] = ()  # feedback keys outside any <YYYY-MM-DD>/ folder: reported, not read
    releases: Sequence[Mapping[str, Any]] = ()  # feedback release requests executed before listing

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "routed": dict(self.routed), "reasons": dict(self.reasons),
                "misplaced": list(self.misplaced), "releases": [dict(r) for r in self.releases]}
