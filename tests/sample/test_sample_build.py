"""The bundled sample: deterministic, documented, and its planted problems are where README says.

The checks here read the files with their own small readers (not the pipeline's), so a bug in
the generator and the same bug in the ingest stage cannot cancel out.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import importlib.util
import io
import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sample.build import build_sample
from sample.spec import PROBLEM_KINDS

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"
DOMAINS = ("legal", "medical", "finance", "customer_service", "product_reviews")
COMPLETE_WEEKS = ["2026-10-04", "2026-10-11", "2026-10-18", "2026-10-25"]
PII = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\d{3}[-\s]?\d{3,4}[-\s]?\d{4}")

_ROW = re.compile(
    r"^\| (?P<n>\d+) \| (?P<kind>\w+) \| `(?P<key>[^`]+)` \| "
    r"(?P<loc>whole file|(?:line|row) \d+) \| "
    r"(?:`(?P<src_key>[^`]+)` (?P<src_loc>(?:line|row) \d+)|-) \|"
)


@dataclass(frozen=True)
class Documented:
    kind: str
    key: str
    location: str
    source_key: str | None
    source_location: str | None


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def readme_problems() -> list[Documented]:
    rows = []
    for line in (SAMPLE / "README.md").read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            rows.append(Documented(
                match["kind"], match["key"], match["loc"], match["src_key"], match["src_loc"]
            ))
    return rows


def decode(payload: bytes) -> tuple[str, str] | None:
    for encoding in ("utf-8", "gb18030"):
        try:
            return payload.decode(encoding), encoding
        except UnicodeDecodeError:
            pass
    return None


class Broken:
    """A JSONL line that is not JSON."""

    def __init__(self, line: str) -> None:
        self.line = line


def read_records(path: Path) -> dict[str, object]:
    """``{"line N"|"row N": record}`` for a readable record file; raises if unreadable."""
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        return {
            f"row {i}": {k: v for k, v in r.items() if v is not None} for i, r in enumerate(rows, 1)
        }
    decoded = decode(path.read_bytes())
    if decoded is None:
        raise UnicodeDecodeError("sample", b"", 0, 1, f"{path} is neither UTF-8 nor GB18030")
    text = decoded[0]
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return {
            f"row {i}": {k: v for k, v in r.items() if v != ""} for i, r in enumerate(reader, 1)
        }
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    records: dict[str, object] = {}
    for i, line in enumerate(lines, 1):
        try:
            records[f"line {i}"] = json.loads(line)
        except json.JSONDecodeError:
            records[f"line {i}"] = Broken(line)
    return records


def valid_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False
    return moment.utcoffset() == timedelta(0)


def record_errors(domain: str, record: object) -> list[str]:
    """Why a landing or feedback record is invalid; empty when it is valid."""
    if not isinstance(record, dict):
        return ["not an object"]
    if domain == "feedback":
        errors = []
        if record.get("domain") not in DOMAINS:
            errors.append("domain")
        if not str(record.get("model_version", "")).startswith(f"{record.get('domain')}/"):
            errors.append("model_version")
        for name in ("request_id", "question"):
            if not isinstance(record.get(name), str):
                errors.append(name)
        if not isinstance(record.get("answer"), str) or PII.search(record["answer"]):
            errors.append("answer")
        rating = record.get("rating")
        if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
            errors.append("rating")
        if record.get("correction") is not None and not isinstance(record["correction"], str):
            errors.append("correction")
        if not valid_timestamp(record.get("created_at")):
            errors.append("created_at")
        return errors
    errors = []
    text = record.get("text")
    if not isinstance(text, str) or not normalize(text):
        errors.append("text")
    for name in ("id", "label"):
        if name in record and not isinstance(record[name], str):
            errors.append(name)
    if "created_at" in record and not valid_timestamp(record["created_at"]):
        errors.append("created_at")
    if record.get("language", "en") not in ("en", "zh"):
        errors.append("language")
    if domain == "customer_service" and isinstance(text, str):
        if f"{record.get('question')}\n{record.get('answer')}" != text:
            errors.append("question/answer")
    return errors


def manifest() -> dict:
    return json.loads((SAMPLE / "MANIFEST.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first = tmp_path_factory.mktemp("build") / "sample"
    second = tmp_path_factory.mktemp("build") / "sample"
    build_sample(out_dir=first)
    build_sample(out_dir=second)
    return first, second


def test_building_twice_gives_identical_bytes(two_builds: tuple[Path, Path]) -> None:
    first, second = two_builds
    a, b = tree(first), tree(second)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_committed_sample_is_what_the_generator_writes(two_builds: tuple[Path, Path]) -> None:
    built, committed = tree(two_builds[0]), tree(SAMPLE)
    assert sorted(built) == sorted(committed), "run `python -m sample.build` to refresh"
    assert [k for k in built if built[k] != committed[k]] == []


def test_rebuilding_in_place_replaces_the_previous_sample(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    build_sample(out_dir=out, seed=7)
    summary = build_sample(out_dir=out)
    assert sorted(tree(out)) == sorted(tree(SAMPLE))
    assert summary.complete_weeks == tuple(COMPLETE_WEEKS)


def test_build_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="keep.txt"):
        build_sample(out_dir=tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_readme_documents_every_kind_and_agrees_with_manifest() -> None:
    documented = readme_problems()
    assert {d.kind for d in documented} == set(PROBLEM_KINDS)
    assert [
        Documented(p["kind"], p["key"], p["location"], p["source_key"], p["source_location"])
        for p in manifest()["problems"]
    ] == documented


def _check_problem(d: Documented) -> None:
    path = SAMPLE / d.key
    payload = path.read_bytes()
    if d.kind == "undecodable_bytes":
        with pytest.raises(UnicodeDecodeError):
            payload.decode("utf-8")
        with pytest.raises(UnicodeDecodeError):
            payload.decode("gb18030")
        number = int(d.location.split()[1])
        assert b"\xff\xfe\xff" in payload.split(b"\n")[number - 1]
        return
    if d.kind == "missing_text_column":
        header = next(csv.reader(io.StringIO(payload.decode("utf-8"))))
        assert "text" not in header and len(header) >= 3
        return
    if d.kind == "not_parquet":
        with pytest.raises(pa.ArrowInvalid):
            pq.read_table(path)
        return
    if d.kind == "unsupported_extension":
        assert path.suffix not in (".jsonl", ".csv", ".parquet")
        return

    value = read_records(path)[d.location]
    if d.kind in ("exact_duplicate", "normalized_duplicate", "distinct_near_duplicate"):
        assert d.source_key is not None and (d.source_key, d.source_location) != (d.key, d.location)
        source = read_records(SAMPLE / d.source_key)[d.source_location]
        text, earlier = value["text"], source["text"]
        if d.kind == "exact_duplicate":
            assert text == earlier
        elif d.kind == "normalized_duplicate":
            assert text != earlier and normalize(text) == normalize(earlier)
        else:
            assert normalize(text) != normalize(earlier)
            if " " in text:
                old, new = normalize(earlier).split(), normalize(text).split()
                assert len(old) == len(new) and sum(a != b for a, b in zip(old, new)) == 1
            else:
                opcodes = difflib.SequenceMatcher(a=earlier, b=text).get_opcodes()
                ops = [op for op in opcodes if op[0] != "equal"]
                assert len(ops) == 1 and ops[0][0] == "replace" and ops[0][2] - ops[0][1] <= 2
    elif d.kind == "truncated_line":
        assert isinstance(value, Broken) and not payload.endswith(b"\n")
        assert d.location == "line %d" % (payload.count(b"\n") + 1)
    elif d.kind == "not_an_object":
        assert not isinstance(value, (dict, Broken))
    elif d.kind == "empty_text":
        assert value["text"] == ""
    elif d.kind == "blank_text":
        assert value["text"] != "" and value["text"].strip() == ""
    elif d.kind == "missing_text":
        assert isinstance(value, dict) and "text" not in value
    elif d.kind == "non_string_label":
        assert "label" in value and not isinstance(value["label"], str)
    elif d.kind == "invalid_created_at":
        assert isinstance(value["created_at"], str) and not valid_timestamp(value["created_at"])
    elif d.kind == "invalid_rating":
        assert value["rating"] not in (1, 2, 3, 4, 5)
    elif d.kind == "missing_answer":
        assert "answer" not in value and "question" in value
    else:
        pytest.fail(f"no check for {d.kind}")


@pytest.mark.parametrize("index", range(len(readme_problems())))
def test_problem_is_where_readme_says(index: int) -> None:
    _check_problem(readme_problems()[index])


def test_there_are_no_undocumented_problems() -> None:
    documented = {(d.key, d.location): d for d in readme_problems()}
    whole_files = {d.key for d in documented.values() if d.location == "whole file"}
    whole_files |= {d.key for d in documented.values() if d.kind == "undecodable_bytes"}
    first_seen: dict[tuple[str, str], tuple[str, str]] = {}
    unexpected: list[str] = []
    files = sorted(manifest()["files"], key=lambda f: (f["arrival_date"], f["key"]))
    for entry in files:
        if entry["key"] in whole_files:
            continue
        domain = entry["domain"]
        for location, record in read_records(SAMPLE / entry["key"]).items():
            here = (entry["key"], location)
            doc = documented.get(here)
            errors = record_errors(domain, record)
            if errors and doc is None:
                unexpected.append(f"{here}: invalid {errors}")
            if errors or domain == "feedback":
                continue
            key = (domain, normalize(record["text"]))
            if key not in first_seen:
                first_seen[key] = here
                if doc is not None and doc.kind in ("exact_duplicate", "normalized_duplicate"):
                    unexpected.append(f"{here}: documented as a duplicate of nothing earlier")
            elif doc is None or doc.kind not in ("exact_duplicate", "normalized_duplicate"):
                unexpected.append(f"{here}: undocumented duplicate of {first_seen[key]}")
            elif (doc.source_key, doc.source_location) != first_seen[key]:
                unexpected.append(
                    f"{here}: README names {doc.source_key} {doc.source_location}, "
                    f"first is {first_seen[key]}"
                )
    assert unexpected == []


def test_gb18030_files_are_not_utf8() -> None:
    entries = [f for f in manifest()["files"] if f["encoding"] == "gb18030"]
    keys = {f["key"] for f in entries}
    assert any(k.startswith("landing/product_reviews/") and k.endswith(".jsonl") for k in keys)
    assert any(k.endswith(".csv") for k in keys)
    for entry in entries:
        payload = (SAMPLE / entry["key"]).read_bytes()
        with pytest.raises(UnicodeDecodeError):
            payload.decode("utf-8")
        assert re.search(r"[\u4e00-\u9fff]", payload.decode("gb18030"))
    undecodable = {d.key for d in readme_problems() if d.kind == "undecodable_bytes"}
    for entry in manifest()["files"]:
        if entry["encoding"] == "utf-8" and entry["key"] not in undecodable:
            (SAMPLE / entry["key"]).read_bytes().decode("utf-8")


def _count(path: Path) -> int:
    try:
        return len(read_records(path)) if path.suffix in (".jsonl", ".csv", ".parquet") else 0
    except pa.ArrowInvalid:
        return 0
    except UnicodeDecodeError:
        return path.read_bytes().rstrip(b"\n").count(b"\n") + 1


def test_manifest_matches_the_files() -> None:
    data = manifest()
    on_disk = {key for key in tree(SAMPLE) if key.startswith("landing/")}
    assert on_disk == {f["key"] for f in data["files"]}
    counts: dict[str, dict[str, int]] = {}
    for entry in data["files"]:
        payload = (SAMPLE / entry["key"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(payload).hexdigest(), entry["key"]
        assert entry["bytes"] == len(payload)
        assert entry["records"] == _count(SAMPLE / entry["key"]), entry["key"]
        domain, arrival = entry["key"].split("/")[1:3]
        assert (entry["domain"], entry["arrival_date"]) == (domain, arrival)
        day = date.fromisoformat(arrival)
        assert date(2026, 10, 4) <= day <= date(2026, 11, 2)
        assert entry["week_start"] == (day - timedelta(days=(day.weekday() + 1) % 7)).isoformat()
        per_week = counts.setdefault(domain, {})
        per_week[entry["week_start"]] = per_week.get(entry["week_start"], 0) + entry["records"]
    assert data["counts"] == counts
    assert data["totals"] == {d: sum(c.values()) for d, c in counts.items()}
    assert data["complete_weeks"] == COMPLETE_WEEKS


def test_sample_shape() -> None:
    data = manifest()
    totals = data["totals"]
    assert set(totals) == set(DOMAINS) | {"feedback"}
    for domain in ("legal", "medical", "finance"):
        assert 300 <= totals[domain] <= 600
    assert 2400 <= totals["product_reviews"] <= 2600
    assert 140 <= totals["feedback"] <= 160
    for domain in DOMAINS:
        for week in COMPLETE_WEEKS:
            files = [f for f in data["files"] if f["domain"] == domain and f["week_start"] == week]
            assert 2 <= len(files) <= 4, (domain, week)
        assert data["counts"][domain]["2026-11-01"] > 0
    formats = {f["format"] for f in data["files"]}
    assert {"jsonl", "csv", "parquet"} <= formats
    assert sum(len(b) for b in tree(SAMPLE).values()) < 5 * 1024 * 1024


def test_synthetic_generator_is_deterministic_and_counts_duplicates(tmp_path: Path) -> None:
    # By path: site-packages ships an unrelated `benchmarks` package that shadows the folder.
    path = REPO / "benchmarks" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("synthetic_under_test", path)
    synthetic = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = synthetic  # dataclasses look the module up while the class is built
    spec.loader.exec_module(synthetic)
    SyntheticConfig, iter_records, write_landing = (
        synthetic.SyntheticConfig, synthetic.iter_records, synthetic.write_landing
    )

    config = SyntheticConfig(
        records=3000, records_per_file=400, duplicate_rate=0.2, near_duplicate_rate=0.1
    )
    records = list(iter_records(config))
    assert records == list(iter_records(config))
    summary = write_landing(config=config, out_dir=tmp_path)
    assert summary.records == len(records) == 3000 and len(summary.keys) == 8
    assert all(k.startswith("landing/") and k.endswith(".jsonl") for k in summary.keys)
    assert {r["language"] for r in records} == {"en", "zh"}
    unique_raw = len({r["text"] for r in records})
    unique_normalized = len({normalize(r["text"]) for r in records})
    new = summary.records - summary.exact_duplicates - summary.near_duplicates
    assert unique_normalized == new
    assert unique_raw <= new + summary.near_duplicates
    assert 0.15 < summary.exact_duplicates / 3000 < 0.25


def _landing_texts() -> set[str]:
    """Every landing record's content (text, or question + answer), normalized, broken lines skipped."""
    texts: set[str] = set()
    for path in sorted((SAMPLE / "landing").rglob("*")):
        if not path.is_file():
            continue
        try:
            records = read_records(path)
        except (UnicodeDecodeError, pa.ArrowInvalid):
            continue
        for record in records.values():
            if isinstance(record, dict):
                for value in (record.get("text"), f"{record.get('question')}\n{record.get('answer')}"):
                    if isinstance(value, str):
                        texts.add(normalize(value))
    return texts


def test_public_evaluation_sets_are_disjoint_from_every_landing_record() -> None:
    landing = _landing_texts()
    sizes = {}
    for domain in DOMAINS:
        lines = (SAMPLE / "evaluation" / f"{domain}.jsonl").read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines]
        sizes[domain] = len(rows)
        assert len({r["id"] for r in rows}) == len(rows)
        for row in rows:
            content = row.get("text") or f"{row['question']}\n{row['answer']}"
            assert normalize(content) not in landing, (domain, row["id"])
        if domain == "customer_service":
            assert all(set(r) == {"id", "question", "answer"} for r in rows)
        else:
            labels = {r["label"] for r in rows}
            assert all(set(r) == {"id", "text", "label"} for r in rows) and len(labels) >= 2
    assert sizes == {"legal": 60, "medical": 60, "finance": 60, "customer_service": 60, "product_reviews": 100}


def test_sample_load_uploads_the_evaluation_sets_where_the_config_says(tmp_path, monkeypatch, capsys) -> None:
    from pipelines.cli import main
    from pipelines.config import load_config
    from pipelines.storage import LocalObjectStore

    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path}")
    config = load_config()
    assert main(["sample", "load"]) == 0
    assert "6 public evaluation set(s) uploaded" in capsys.readouterr().out
    store = LocalObjectStore(tmp_path / config.storage.bucket)
    for domain in (*DOMAINS, "code"):
        assert store.get(f"evaluation/{domain}/eval.jsonl") == (SAMPLE / "evaluation" / f"{domain}.jsonl").read_bytes()
