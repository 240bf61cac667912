"""A landing snapshot -> one record per kept source file, scrubbed, with every other file quarantined with a reason.

The result is an ``ingest.parse.ParsedFile`` (records ``(n, raw)`` where ``n`` numbers the snapshot's files
in path order, so ``<key>#L<n>`` names a file), so the weekly chain handles a snapshot like any landing
file: the records go on through standardize, governance and the SHA-256 dedup (exact file-level dedup),
and the quarantined files are record rejections. A record holds only scrubbed text; a rejection never holds
a file's content (``raw`` is None): quarantined code may hold the secrets scrubbing could not remove.

Record fields: ``text`` (the scrubbed file), ``label`` (its language), ``question``/``answer`` (its training
example: ``pipelines.code.examples``), ``subject_id`` (``<repository>/<path>`` or ``<repository>``, as
``code.ledger_subject`` says: only its hash is curated, the privacy ledger's subject).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pipelines.code.classify import FileFacts, classify
from pipelines.code.config import CodeConfig, code_settings
from pipelines.code.examples import build_example
from pipelines.code.near_dup import NearDuplicate, find_near_duplicates
from pipelines.code.scrub import scrub_text
from pipelines.code.snapshot import SnapshotError, is_snapshot, read_snapshot, repository_of
from pipelines.ingest.parse import FILE, RECORD, ParsedFile, Rejection, parse_file, source_uri

STAGE = "code"


@dataclass
class ParsedSnapshot(ParsedFile):
    """A parsed snapshot: ``ParsedFile`` plus what the code report needs (no file content in it)."""

    repository: str = ""
    files: list[FileFacts] = field(default_factory=list)
    near_duplicates: list[NearDuplicate] = field(default_factory=list)
    placeholders: Counter = field(default_factory=Counter)
    skipped_members: int = 0

    def report(self) -> dict[str, object]:
        """The snapshot's report: paths, languages, licences, sizes, quarantine reasons, near duplicates."""
        reasons = Counter(f.quarantine[0] for f in self.files if f.quarantine)
        return {"key": self.key, "repository": self.repository, "files": len(self.files),
                "records": len(self.records), "quarantined": dict(sorted(reasons.items())),
                "skipped_members": self.skipped_members, "placeholders": dict(sorted(self.placeholders.items())),
                "near_duplicates": [n.to_dict() for n in self.near_duplicates],
                "file_facts": [{"path": f.path, "language": f.language, "licence": f.licence, "size": f.size,
                                "quarantine": list(f.quarantine) if f.quarantine else None} for f in self.files]}


def parse_snapshot(*, key: str, data: bytes, config: CodeConfig, max_bytes: int = 1 << 30) -> ParsedSnapshot:
    """Read, classify and scrub every file of one snapshot.

    Args:
        key: the landing object key (its file name names the repository).
        data: the archive's bytes.
        config: the domain's code settings.
        max_bytes: what the archive may expand to (``ingest.max_file_bytes``).
    """
    result = ParsedSnapshot(key=key, repository=repository_of(key), encoding="utf-8")
    try:
        files, result.skipped_members = read_snapshot(key, data, max_total_bytes=max_bytes)
    except SnapshotError as exc:
        result.file_error = Rejection(key, "parse", "unreadable_snapshot", str(exc), kind=FILE)
        return result
    kept: list[tuple[str, str]] = []
    for number, source in enumerate(files, start=1):
        result.rows += 1
        uri = source_uri(key, number)
        facts, text = classify(source.path, source.data, config=config.classify)
        result.files.append(facts)
        if facts.quarantine:
            reason, detail = facts.quarantine
            result.rejections.append(Rejection(uri, STAGE, reason, f"{source.path}: {detail}", None, kind=RECORD))
            continue
        scrubbed = scrub_text(text, config=config.scrub)
        if scrubbed.problem:
            result.files[-1] = replace(facts, quarantine=("secret_not_removable", scrubbed.problem))
            result.rejections.append(Rejection(uri, STAGE, "secret_not_removable",
                                               f"{source.path}: {scrubbed.problem}", None, kind=RECORD))
            continue
        result.placeholders.update(scrubbed.counts)
        record: dict[str, object] = {"text": scrubbed.text, "label": facts.language,
                                     "subject_id": _subject(result.repository, source.path, config)}
        example = build_example(scrubbed.text, config=config.examples)
        if example:
            record["question"], record["answer"] = example
        result.records.append((number, record))
        kept.append((source.path, scrubbed.text))
    result.near_duplicates = find_near_duplicates(kept, threshold=config.near_duplicate_threshold,
                                                  num_perm=config.num_perm)
    return result


def _subject(repository: str, path: str, config: CodeConfig) -> str:
    return repository if config.ledger_subject == "repository" else f"{repository}/{path}"


def parse_landing(*, config, domain: str, key: str, data: bytes, kind: str,
                  encodings: Sequence[str]) -> ParsedFile:
    """``parse_file``, except a snapshot archive of a code domain, which ``parse_snapshot`` reads.

    Args:
        config: the ``PipelineConfig``; ``domains.<domain>.code`` makes ``domain`` a code domain.
    """
    settings = code_settings(config, domain) if is_snapshot(key) and kind == "files" else None
    if settings is None:
        return parse_file(key=key, data=data, kind=kind, encodings=encodings)
    return parse_snapshot(key=key, data=data, config=settings, max_bytes=config.ingest.max_file_bytes)


def report_snapshot(store, *, prefix: str, run_key: str, parsed: ParsedFile) -> str | None:
    """Write a snapshot's report (``ParsedSnapshot.report``) under ``prefix`` (the partition's quarantine folder,
    encrypted with it); the key written, or None for any other parsed file."""
    if not isinstance(parsed, ParsedSnapshot):
        return None
    key = f"{prefix}/code-report-{run_key}-{parsed.key.rsplit('/', 1)[-1]}.json"
    store.put(key, json.dumps(parsed.report(), indent=1, sort_keys=True).encode())
    return key
