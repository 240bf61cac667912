"""Tiny fake model folders (a few files of bytes): the artifact stage never loads a real model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipelines.artifacts import build_manifest

WHEN = dt.datetime(2026, 10, 11, 3, 0, tzinfo=dt.timezone.utc)
PARTITIONS = [{"interval": "2026-10-04_2026-10-11", "version": "abc123", "digest": "d" * 64, "rows": 120}]
DP = {"epsilon": 1.25, "delta": 1e-5, "noise_multiplier": 1.1, "sample_rate": 0.01, "steps": 300,
      "accountant": "rdp", "max_grad_norm": 1.0, "ledger_key": "privacy/ledger/legal/run-1.json"}


def make_folder(root: Path, name: str, *, seed: str, metrics: dict | None = None, domain: str = "legal",
                version: str = "1.0", task: str = "classification") -> Path:
    """A model folder whose bytes depend on ``seed`` (so different seeds give different artifact ids)."""
    folder = root / name
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x00\x01weights-" + seed.encode() * 50)
    (folder / "config.json").write_text('{"hidden_size": 8, "seed": "%s"}\n' % seed)
    (folder / "tokenizer" / "tokenizer.json").write_text('{"vocab": ["[PAD]", "a", "b"]}\n')
    build_manifest(folder, domain=domain, task=task, kind="weekly", version=version, parent=None,
                   data=PARTITIONS, code_version="git:1234abcd", dp=DP,
                   metrics=metrics if metrics is not None else {"macro_f1": 0.8}, created_by="test", created_at=WHEN)
    return folder


def flip_last_byte(store, key: str) -> None:
    """Alter exactly one byte of a stored object (same size, different sha256)."""
    data = store.get(key)
    store.put(key, data[:-1] + bytes([data[-1] ^ 1]))
