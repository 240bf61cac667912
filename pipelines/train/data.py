"""Curated rows to training examples: which rows train, a stable held-out split, labels, per-example weights.

Examples are plain dicts (JSON-serialisable, one a line in the JSONL files the entry point reads):

- classification: ``{"id", "content_sha256", "text", "label"}``
- causal_lm: ``{"id", "content_sha256", "question", "answer"}``
- forecast: ``{"id", "window": [floats], "target": float}``

Any example may carry ``"weight"`` (default 1.0): its loss is multiplied by it before per-sample clipping.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """The training data cannot be used as given; the message says what to do."""


def _content_hash(row: Mapping[str, Any]) -> str:
    digest = row.get("content_sha256")
    if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{8,}", digest):
        return digest
    # Rows from older partitions or hand-written fixtures: hash what the model sees.
    text = row.get("text") or f"{row.get('question') or ''}\n{row.get('answer') or ''}"
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()


def classification_examples(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``usage == "train"`` and a label, as ``{"id", "content_sha256", "text", "label"}``."""
    out = []
    for row in rows:
        if row.get("usage") == "train" and row.get("label") not in (None, "") and row.get("text"):
            out.append({"id": row.get("id"), "content_sha256": _content_hash(row), "text": row["text"],
                        "label": str(row["label"])})
    return out


def causal_lm_examples(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``usage == "train"`` and both question and answer (feedback rated >= 4 without correction
    is curated with ``usage == "train"``), as ``{"id", "content_sha256", "question", "answer"}``."""
    out = []
    for row in rows:
        question, answer = row.get("question"), row.get("answer")
        if row.get("usage") == "train" and question and answer:
            out.append({"id": row.get("id"), "content_sha256": _content_hash(row), "question": question,
                        "answer": answer})
    return out


def examples_for_task(task: str, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The examples of ``task`` (``classification`` or ``causal_lm``) in curated rows."""
    if task == "classification":
        return classification_examples(rows)
    if task == "causal_lm":
        return causal_lm_examples(rows)
    raise DataError(f"task={task!r} has no curated rows: use classification or causal_lm "
                    "(forecast trains on series, see pipelines.train.models.series_windows)")


def is_held_out(content_sha256: str, eval_percent: int) -> bool:
    """Whether a record is in the held-out split: ``int(sha[:8], 16) % 100 < eval_percent``.

    It depends on the record's content only, so a record stays on the same side in every run and
    every partition, and the gate compares candidate and production on the same records.
    """
    return int(content_sha256[:8], 16) % 100 < eval_percent


def split_by_hash(examples: Sequence[Mapping[str, Any]], *, eval_percent: int) -> tuple[list[dict], list[dict]]:
    """``(train, held_out)`` by :func:`is_held_out` of each example's ``content_sha256``; order is kept."""
    if not 0 <= eval_percent < 100:
        raise DataError(f"eval_percent={eval_percent}: use 0..99")
    train, held = [], []
    for example in examples:
        (held if is_held_out(_content_hash(example), eval_percent) else train).append(dict(example))
    return train, held


def check_labels(examples: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> None:
    """Raise DataError when an example's label is not one of the model's labels.

    The label set is the base model's (its classification head): an unseen label needs a new
    head, i.e. a new base model (monthly retrain / major version), not a silent extension.
    """
    known = set(labels)
    unseen: dict[str, int] = {}
    for example in examples:
        if example["label"] not in known:
            unseen[example["label"]] = unseen.get(example["label"], 0) + 1
    if unseen:
        raise DataError(f"label(s) {dict(sorted(unseen.items()))} (with counts) are not in the model's labels "
                        f"{list(labels)}: build a new base model with them (a major version) or fix the data")


def read_lexicon(path: str | Path) -> tuple[str, ...]:
    """Terms of a lexicon file: one a line, ``#`` comments and blank lines ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"lexicon {path} not found: set training.weight_terms_file to an existing file") from None
    return tuple(t for t in (line.split("#", 1)[0].strip() for line in lines) if t)


def term_weights(texts: Sequence[str], *, terms: Sequence[str], factor: float) -> list[float]:
    """``factor`` for each text that contains one of ``terms`` (case-insensitive, whole words for Latin terms),
    else 1.0.

    Args:
        texts: the texts to weigh.
        terms: lexicon terms (e.g. legal terms of art).
        factor: the weight of a matching text (e.g. 1.5).

    Returns:
        One weight per text.
    """
    if factor <= 0:
        raise DataError(f"factor={factor}: use a positive weight")
    patterns = []
    for term in terms:
        term = term.strip().lower()
        if term:
            # Latin words match whole words only ("act" must not weigh "fact"); CJK terms match anywhere.
            patterns.append(rf"\b{re.escape(term)}\b" if re.match(r"^[\w\s-]+$", term, re.ASCII) else re.escape(term))
    if not patterns:
        return [1.0] * len(texts)
    regex = re.compile("|".join(patterns))
    return [factor if regex.search(t.lower()) else 1.0 for t in texts]


def example_text(example: Mapping[str, Any]) -> str:
    """The text a weight lexicon is matched against."""
    if "text" in example:
        return str(example["text"])
    return f"{example.get('question') or ''}\n{example.get('answer') or ''}"


def with_weights(examples: Sequence[Mapping[str, Any]], *, terms: Sequence[str], factor: float) -> list[dict]:
    """Copies of ``examples`` with ``weight`` set by :func:`term_weights`."""
    weights = term_weights([example_text(e) for e in examples], terms=terms, factor=factor)
    return [{**e, "weight": w} for e, w in zip(examples, weights)]


def write_jsonl(path: str | Path, examples: Iterable[Mapping[str, Any]]) -> Path:
    """Write examples one JSON object a line (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps(example, ensure_ascii=False, sort_keys=True) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Examples from a JSONL file (DataError naming the line when one is not a JSON object)."""
    out = []
    try:
        with Path(path).open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
                if not isinstance(value, dict):
                    raise DataError(f"{path}:{n}: expected a JSON object per line")
                out.append(value)
    except FileNotFoundError:
        raise DataError(f"{path} not found: write the examples first (pipelines.train.data.write_jsonl)") from None
    return out
