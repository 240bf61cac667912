"""The sample's public evaluation sets, uploaded where ``artifacts.evaluation`` says (what ``sample load`` does)."""

from __future__ import annotations

from pathlib import Path

EVALUATION = Path(__file__).resolve().parents[1] / "data" / "sample" / "evaluation"


def upload_evaluation_sets(config, store, *, only: tuple[str, ...] = ()) -> list[str]:
    """Put ``data/sample/evaluation/<slot>.jsonl`` at each configured key; returns the keys written."""
    keys = []
    for slot, setting in sorted(config.artifacts.evaluation.items()):
        if setting.key and (not only or slot in only):
            store.put(setting.key, (EVALUATION / f"{slot}.jsonl").read_bytes())
            keys.append(setting.key)
    return keys
