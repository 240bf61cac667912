"""Drafting the sample's files: records spread over weeks and files, with every planned problem planted."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sample.spec import (
    BLANK_TEXT,
    DISTINCT_NEAR_DUPLICATE,
    DOMAINS,
    EMPTY_TEXT,
    EXACT_DUPLICATE,
    FEEDBACK_DOMAIN,
    INVALID_CREATED_AT,
    INVALID_RATING,
    MISSING_ANSWER,
    MISSING_TEXT,
    MISSING_TEXT_COLUMN,
    NON_STRING_LABEL,
    NORMALIZED_DUPLICATE,
    NOT_AN_OBJECT,
    NOT_PARQUET,
    SampleProblem,
    TRUNCATED_LINE,
    UNDECODABLE_BYTES,
    UNSUPPORTED_EXTENSION,
    _FEEDBACK_RECORDS,
    _FileSpec,
    _ID_PREFIX,
    _plan,
)
from sample.sources import (
    _DISTINCT_PAIRS,
    _FEEDBACK_DOMAIN_WEIGHTS,
    _FEEDBACK_VERSIONS,
    _GENERIC_CORRECTION,
    _Item,
    _MASKED_SUFFIX,
    _PII_PATTERN,
)
from sample.render import (
    _Draft,
    _NOTES,
    _Row,
    _full_width,
    _half_width_punctuation,
    _json_line,
    _key,
    _render_csv,
    _render_jsonl,
    _render_parquet,
    _spaces_and_tabs,
)

# --------------------------------------------------------------------------------------------
# Drafting files



@dataclass(frozen=True)
class _PendingProblem:
    kind: str
    key: str
    row: _Row | None
    detail: str
    source_key: str | None = None
    source_row: _Row | None = None


def _rng(seed: int, purpose: str) -> random.Random:
    # One generator per purpose, so that changing one part of the sample leaves the rest as is.
    return random.Random(f"{seed}/{purpose}")


def _allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` proportionally to ``weights`` (largest remainder, ties by position)."""
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _timestamp(moment: datetime, style: str) -> str:
    if style == "offset":
        return moment.isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _created_at(
    rng: random.Random, arrival: date, *, style: str = "z", days_back: bool = True
) -> str:
    back = rng.choice((0, 0, 0, 1, 1, 2)) if days_back else 0
    day = arrival - timedelta(days=back)
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return _timestamp(start + timedelta(seconds=rng.randrange(6 * 3600, 23 * 3600)), style)


class _SampleDraft:
    """All files of the sample, in memory, while records and problems are placed."""

    def __init__(self, *, seed: int) -> None:
        self.seed = seed
        self.plan = _plan()
        self.drafts = {spec.key: _Draft(spec) for spec in self.plan}
        if len(self.drafts) != len(self.plan):
            raise ValueError("the file plan lists a key twice")
        self.problems: list[_PendingProblem] = []
        self.next_id = {domain: 1 for domain in DOMAINS}
        self.base_rows: dict[str, list[_Row]] = {}
        self.cs_items: list[_Item] = []

    # -- records --------------------------------------------------------------------------

    def new_id(self, domain: str) -> str:
        number = self.next_id[domain]
        self.next_id[domain] = number + 1
        return f"{_ID_PREFIX[domain]}-{number:06d}"

    def fill(self, items_by_domain: Mapping[str, list[_Item]]) -> None:
        for domain in DOMAINS:
            items = list(items_by_domain[domain])
            _rng(self.seed, f"shuffle/{domain}").shuffle(items)
            specs = [s for s in self.plan if s.domain == domain and s.holds_records]
            counts = _allocate(len(items), [s.weight for s in specs])
            rng = _rng(self.seed, f"records/{domain}")
            start = 0
            for spec, count in zip(specs, counts):
                rows = [self._row_for(item, spec, rng) for item in items[start : start + count]]
                start += count
                rows.sort(key=lambda r: (str(r.record.get("created_at", "")), r.record["text"]))
                if "id" not in spec.omit:
                    for row in rows:
                        row.record["id"] = self.new_id(domain)
                self.drafts[spec.key].rows = rows
                self.base_rows[spec.key] = list(rows)

    @staticmethod
    def _row_for(item: _Item, spec: _FileSpec, rng: random.Random) -> _Row:
        record: dict[str, object] = {"text": item.text}
        if "label" not in spec.omit:
            record["label"] = item.label
        # Optional fields are sometimes absent upstream; the reader must not require them.
        if rng.random() >= 0.05:
            record["language"] = item.language
        if rng.random() >= 0.025:
            record["created_at"] = _created_at(
                rng, date.fromisoformat(spec.arrival), style=spec.created_at_style
            )
        if item.question is not None:
            record["question"] = item.question
            record["answer"] = item.answer
        return _Row(record=record)

    def base(self, key: str, index: int) -> _Row:
        return self.base_rows[key][index]

    def insert(self, key: str, at: int, row: _Row) -> _Row:
        rows = self.drafts[key].rows
        rows.insert(min(at, len(rows)), row)
        return row

    def copy_record(self, source: _Row, *, key: str, **changes: object) -> _Row:
        """A new record with the source's content, a new id and a created_at in ``key``'s day."""
        spec = self.drafts[key].spec
        record = dict(source.record)
        rng = _rng(self.seed, f"copy/{key}/{len(self.problems)}")
        record["created_at"] = _created_at(rng, date.fromisoformat(spec.arrival), days_back=False)
        if "id" in spec.omit:
            record.pop("id", None)
        else:
            record["id"] = self.new_id(spec.domain)
        record.update(changes)
        return _Row(record=record)

    def fresh_record(self, key: str, *, label: str, language: str, **fields: object) -> _Row:
        spec = self.drafts[key].spec
        rng = _rng(self.seed, f"fresh/{key}/{len(self.problems)}")
        record: dict[str, object] = {
            "id": self.new_id(spec.domain),
            "label": label,
            "language": language,
            "created_at": _created_at(rng, date.fromisoformat(spec.arrival), days_back=False),
        }
        record.update(fields)
        return _Row(record=record)

    def problem(
        self,
        kind: str,
        key: str,
        row: _Row | None,
        detail: str,
        *,
        source_key: str | None = None,
        source_row: _Row | None = None,
    ) -> None:
        self.problems.append(_PendingProblem(kind, key, row, detail, source_key, source_row))

    def copy_to(
        self, kind: str, source_key: str, source: _Row, key: str, at: int, detail: str,
        **changes: object,
    ) -> None:
        """Insert a copy of ``source`` into ``key`` and record it as a problem of ``kind``."""
        row = self.insert(key, at, self.copy_record(source, key=key, **changes))
        self.problem(kind, key, row, detail, source_key=source_key, source_row=source)

    # -- deliberate problems -------------------------------------------------------------

    def plant_duplicates(self) -> None:
        """Same text again: in the same file, the same week, later weeks, other formats."""
        # A partial re-delivery: the very same line (same id) arrives again the next day.
        src, dst = _key("legal/2026-10-05/batch-01.jsonl"), _key("legal/2026-10-06/batch-01.jsonl")
        source = self.base(src, 4)
        row = self.insert(dst, 2, _Row(record=dict(source.record)))
        self.problem(EXACT_DUPLICATE, dst, row,
                     "byte-identical line, same id (partial re-delivery)",
                     source_key=src, source_row=source)

        key = _key("customer_service/2026-10-04/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, key, self.base(key, 1), key, 12,
                     "same text as an earlier line of the same file, new id")

        src, dst = _key("legal/2026-10-12/batch-01.jsonl"), _key("legal/2026-10-19/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, src, self.base(src, 3), dst, 5,
                     "same text as a record of the previous week, new id")

        src = _key("medical/2026-10-07/batch-01.jsonl")
        dst = _key("medical/2026-10-22/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, src, self.base(src, 6), dst, 3,
                     "same text as a record two weeks earlier, new id")

        src = _key("product_reviews/2026-10-10/batch-01.csv")
        dst = _key("product_reviews/2026-10-13/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, src, self.base(src, 2), dst, 4,
                     "same text as a UTF-8 CSV row of the previous week, "
                     "here in a GB18030 JSONL file")

        src = _key("finance/2026-10-26/batch-01.jsonl")
        dst = _key("finance/2026-11-02/batch-01.jsonl")
        self.copy_to(EXACT_DUPLICATE, src, self.base(src, 2), dst, 1,
                     "same text as a record of the last complete week, "
                     "arriving in the incomplete week")

    def plant_normalized_duplicates(self) -> None:
        """Texts that differ in bytes but are equal after NFKC and whitespace folding."""
        src = _key("finance/2026-10-08/batch-01.jsonl")
        dst = _key("finance/2026-10-09/batch-01.jsonl")
        source = self.base(src, 3)
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 2,
                     "full-width letters and digits (same week)",
                     text=_full_width(str(source.record["text"])))

        src, dst = _key("legal/2026-10-05/batch-01.jsonl"), _key("legal/2026-10-06/batch-01.jsonl")
        source = self.base(src, 7)
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 8,
                     "double spaces and a tab between words (same week)",
                     text=_spaces_and_tabs(str(source.record["text"])))

        src = _key("medical/2026-10-11/batch-01.jsonl")
        dst = _key("medical/2026-10-16/batch-01.jsonl")
        source = self.base(src, 5)
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 4,
                     "leading spaces and trailing newlines (same week)",
                     text="  " + str(source.record["text"]) + "\n\n")

        src = _key("product_reviews/2026-10-07/batch-01.jsonl")
        dst = _key("product_reviews/2026-10-27/batch-01.jsonl")
        source = next(r for r in self.base_rows[src] if "，" in str(r.record["text"]))
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 6,
                     "ASCII instead of full-width Chinese punctuation, "
                     "trailing newline (3 weeks later)",
                     text=_half_width_punctuation(str(source.record["text"])) + "\n")

        src = _key("customer_service/2026-10-09/batch-01.jsonl")
        dst = _key("customer_service/2026-10-12/batch-01.jsonl")
        source = next(
            r for r in self.base_rows[src]
            if r.record.get("language") == "en" and str(r.record["question"]).count(" ") >= 3
        )
        question = _spaces_and_tabs(str(source.record["question"]))
        answer = str(source.record["answer"]) + "\t"
        self.copy_to(NORMALIZED_DUPLICATE, src, source, dst, 3,
                     "dialogue with extra spaces and tabs (next week)",
                     question=question, answer=answer, text=f"{question}\n{answer}")

    def plant_distinct_near_duplicates(self) -> None:
        """Hand-written pairs one word apart: an exact dedup must keep both."""
        placements = {  # domain: ((first file, position), (second file, position))
            "legal": (
                ("legal/2026-10-12/batch-01.jsonl", 8),
                ("legal/2026-10-19/batch-01.jsonl", 9),
            ),
            "medical": (
                ("medical/2026-10-25/batch-01.jsonl", 3),
                ("medical/2026-10-25/batch-01.jsonl", 7),
            ),
            "finance": (
                ("finance/2026-10-15/batch-01.jsonl", 2),
                ("finance/2026-10-18/batch-01.jsonl", 4),
            ),
            "product_reviews": (
                ("product_reviews/2026-10-19/batch-01.jsonl", 2),
                ("product_reviews/2026-10-19/batch-01.jsonl", 9),
            ),
        }
        for domain, places in placements.items():
            language = "zh" if domain == "product_reviews" else "en"
            rows = []
            for (path, at), (label, text) in zip(places, _DISTINCT_PAIRS[domain]):
                record = self.fresh_record(_key(path), label=label, language=language, text=text)
                rows.append(self.insert(_key(path), at, record))
            self.problem(DISTINCT_NEAR_DUPLICATE, _key(places[1][0]), rows[1],
                         "one word differs from the earlier record; both must be kept",
                         source_key=_key(places[0][0]), source_row=rows[0])

    def plant_broken_records(self) -> None:
        """Lines a reader must reject one by one while keeping the rest of the file."""
        key = _key("customer_service/2026-10-14/batch-01.jsonl")
        line = _json_line(self.drafts[key].rows[-1].record)
        truncated = _Row(raw=line[: line.index('"text": "') + len('"text": "') + 2])
        self.drafts[key].rows[-1] = truncated
        self.problem(TRUNCATED_LINE, key, truncated, "last line cut mid-JSON, no trailing newline")

        key = _key("legal/2026-10-21/batch-01.jsonl")
        row = self.insert(key, 6, _Row(raw=json.dumps(["contract", "breach", "not an object"])))
        self.problem(NOT_AN_OBJECT, key, row, "valid JSON, but a list instead of an object")

        key = _key("medical/2026-10-11/batch-01.jsonl")
        row = self.insert(key, 9, self.fresh_record(key, label="pharmacy", language="en", text=""))
        self.problem(EMPTY_TEXT, key, row, 'text is ""')

        key = _key("finance/2026-10-15/batch-01.jsonl")
        blank = self.fresh_record(key, label="banking", language="en", text=" \t  \n")
        row = self.insert(key, 7, blank)
        self.problem(BLANK_TEXT, key, row, "text holds only spaces, a tab and a newline")

        key = _key("medical/2026-10-16/batch-01.jsonl")
        row = self.insert(key, 11, self.fresh_record(key, label="oncology", language="en"))
        self.problem(MISSING_TEXT, key, row, "object without a text field")

        key = _key("finance/2026-10-12/batch-01.jsonl")
        row = self.base(key, 5)
        row.record["label"] = 5
        self.problem(NON_STRING_LABEL, key, row, "label is the number 5")

        key = _key("product_reviews/2026-10-19/batch-01.jsonl")
        row = self.base(key, 3)
        row.record["created_at"] = "last Tuesday"
        self.problem(INVALID_CREATED_AT, key, row, 'created_at is "last Tuesday"')

    def plant_broken_files(self) -> None:
        """Files a reader must quarantine as a whole."""
        key = _key("customer_service/2026-10-29/batch-01.jsonl")
        row = self.base(key, 5)
        row.undecodable = True
        self.problem(UNDECODABLE_BYTES, key, row, "bytes ff fe ff inside the text of this line")
        self.problem(MISSING_TEXT_COLUMN, _key("finance/2026-10-19/batch-01.csv"), None,
                     "header is id,body,category,created_at,language: no text column")
        self.problem(NOT_PARQUET, _key("medical/2026-10-27/batch-01.parquet"), None,
                     "starts with the Parquet magic PAR1, then random bytes")
        self.problem(UNSUPPORTED_EXTENSION, _key("legal/2026-10-28/notes.txt"), None,
                     "operator notes uploaded next to the data")

    # -- feedback ------------------------------------------------------------------------

    def fill_feedback(self, items_by_domain: Mapping[str, list[_Item]]) -> None:
        rng = _rng(self.seed, "feedback")
        specs = [s for s in self.plan if s.domain == FEEDBACK_DOMAIN]
        counts = _allocate(_FEEDBACK_RECORDS, [s.weight for s in specs])
        dialogues = [
            item for item in items_by_domain["customer_service"]
            if not _PII_PATTERN.search(item.text) and len(item.text) <= 400
        ]
        dialogues.sort(key=lambda item: item.text)
        answers: dict[str, list[str]] = {}
        for item in dialogues:
            answers.setdefault(str(item.question), []).append(str(item.answer))
        classified = {d: sorted(items_by_domain[d], key=lambda i: i.text) for d in DOMAINS}
        labels = {d: sorted({i.label for i in items_by_domain[d]}) for d in DOMAINS}
        domains = list(_FEEDBACK_DOMAIN_WEIGHTS)
        weights = list(_FEEDBACK_DOMAIN_WEIGHTS.values())
        for spec, count in zip(specs, counts):
            arrival = date.fromisoformat(spec.arrival)
            rows = []
            for _ in range(count):
                domain = rng.choices(domains, weights)[0]
                rating = rng.choices((1, 2, 3, 4, 5), (10, 12, 18, 30, 30))[0]
                if domain == "customer_service":
                    item = rng.choice(dialogues)
                    question, answer = str(item.question), str(item.answer)
                    if rng.random() < 0.12:
                        question += _MASKED_SUFFIX[item.language]
                    # Mostly low ratings are corrected; a few high ones too, on purpose.
                    correct_rate = 0.7 if rating <= 2 else 0.15 if rating == 3 else 0.03
                    corrected = rng.random() < correct_rate
                    alternatives = [a for a in answers[str(item.question)] if a != answer]
                    correction = (
                        (alternatives[0] if alternatives else _GENERIC_CORRECTION[item.language])
                        if corrected else None
                    )
                else:
                    item = rng.choice(classified[domain])
                    question = item.text
                    wrong = [label for label in labels[domain] if label != item.label]
                    answer = rng.choice(wrong) if rating <= 2 else item.label
                    corrected = (rating <= 2 and rng.random() < 0.7) or (
                        rating == 3 and rng.random() < 0.1
                    )
                    correction = None
                    if corrected:
                        correction = item.label if rating <= 2 else rng.choice(wrong)
                version = _FEEDBACK_VERSIONS[domain][0 if arrival < date(2026, 10, 18) else 1]
                rows.append(_Row(record={
                    "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "domain": domain,
                    "model_version": f"{domain}/{version}",
                    "question": question,
                    "answer": answer,
                    "rating": rating,
                    "correction": correction,
                    "created_at": _created_at(rng, arrival, days_back=False),
                }))
            rows.sort(key=lambda r: (str(r.record["created_at"]), str(r.record["request_id"])))
            self.drafts[spec.key].rows = rows
            self.base_rows[spec.key] = list(rows)

        key = _key("feedback/2026-10-19/feedback-01.jsonl")
        row = self.base(key, 5)
        row.record["rating"] = 7
        self.problem(INVALID_RATING, key, row, "rating is 7 (allowed: 1..5)")
        key = _key("feedback/2026-10-26/feedback-01.jsonl")
        row = self.base(key, 8)
        del row.record["answer"]
        self.problem(MISSING_ANSWER, key, row, "no answer field")

    # -- output ----------------------------------------------------------------------------

    def resolve_problems(self) -> tuple[SampleProblem, ...]:
        resolved = []
        for pending in self.problems:
            unit, number = self._locate(pending.key, pending.row)
            source_unit, source_number = (
                self._locate(pending.source_key, pending.source_row)
                if pending.source_key is not None else (None, None)
            )
            resolved.append(SampleProblem(
                kind=pending.kind,
                key=pending.key,
                unit=unit,
                number=number,
                detail=pending.detail,
                source_key=pending.source_key,
                source_unit=source_unit,
                source_number=source_number,
            ))
        return tuple(resolved)

    def _locate(self, key: str, row: _Row | None) -> tuple[str | None, int | None]:
        if row is None:
            return None, None
        rows = self.drafts[key].rows
        index = next(i for i, candidate in enumerate(rows) if candidate is row)
        return ("line" if key.endswith(".jsonl") else "row"), index + 1

    def render(self) -> dict[str, tuple[bytes, int]]:
        """Return ``{key: (file bytes, records in the file)}`` for every planned file."""
        rendered = {}
        for key, draft in self.drafts.items():
            spec = draft.spec
            if spec.role == "unsupported":
                rendered[key] = (_NOTES.encode("utf-8"), 0)
            elif spec.role == "not_parquet":
                noise = _rng(self.seed, f"garbage/{key}").randbytes(3000)
                rendered[key] = (b"PAR1" + noise, 0)
            elif spec.suffix == ".jsonl":
                rendered[key] = (_render_jsonl(draft), len(draft.rows))
            elif spec.suffix == ".csv":
                rendered[key] = (_render_csv(draft), len(draft.rows))
            elif spec.suffix == ".parquet":
                rendered[key] = (_render_parquet(draft), len(draft.rows))
            else:
                raise ValueError(f"no renderer for {key}")
        return rendered
