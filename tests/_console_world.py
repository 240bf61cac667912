"""A small world for the operations console tests, written through the project's own create-only paths:
a published legal week with quarantined raw records (one holding a phone number and an e-mail), a review queue,
three legal artifacts with two promotions, and a privacy ledger with two spends and one refused reservation.

Used by tests/pipelines/console (pure logic), tests/plugins (the FastAPI app) and tests/e2e (the browser).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from pipelines.partition import Interval

WEEK = Interval.parse("2026-10-04_2026-10-11")
WEEK2 = Interval.parse("2026-10-11_2026-10-18")
LANDING = "landing/legal/2026-10-05/a.jsonl"
PHONE, EMAIL = "13812345678", "li.wei@example.com"
LABELS = ("contract", "criminal", "family")
QUEUE_ITEMS = [  # (id, text, predicted, confidence, reason)
    ("LG-1", "The lease contract was renewed for two years.", "contract", 0.91, "sampled"),
    ("LG-2", "The defendant was charged with theft.", "criminal", 0.55, "low_confidence"),
    ("LG-3", "Custody of the children was shared.", "family", 0.42, "low_confidence"),
    ("LG-4", "The parties signed a settlement agreement.", "contract", 0.88, "sampled"),
    ("LG-5", "The court granted the divorce petition.", "family", 0.58, "low_confidence"),
]
WHEN = dt.datetime(2026, 10, 11, 3, 0, tzinfo=dt.timezone.utc)


def publish_week(config, store) -> None:
    """One legal week: two clean records, a Chinese record with a phone and an e-mail (rejected by the language
    rule before PII masking, so quarantined raw), a test message and broken JSON."""
    from pipelines.weekly import PartitionRef, process_partition

    lines = [json.dumps({"id": "k1", "text": "The lease contract was renewed for two years."}),
             json.dumps({"id": "z1", "text": f"合同纠纷请致电 {PHONE} 或邮件 {EMAIL} 联系李律师"}, ensure_ascii=False),
             json.dumps({"id": "t1", "text": "test"}),
             '{"id": "j1", "text": "broken',
             json.dumps({"id": "k2", "text": "The tenant paid the deposit late."})]
    store.put(LANDING, ("\n".join(lines) + "\n").encode())
    result = process_partition(config=config, store=store, part=PartitionRef(domain="legal", interval=WEEK))
    assert result["published"] is True, result


def write_review_queue(store) -> str:
    """The legal week's review queue (five items, three low-confidence); returns its key."""
    from pipelines.review import ReviewConfig, write_queue

    items = [{"id": i, "domain": "legal", "text": t, "predicted_label": p, "confidence": c, "reason": r,
              "review_label": None, "reviewer": None, "reviewed_at": None} for i, t, p, c, r in QUEUE_ITEMS]
    meta = write_queue(store, domain="legal", interval=WEEK.name, version="v1", items=items, labels=LABELS,
                       labeller={"version": "test"}, config=ReviewConfig(share=0.15, low_confidence=0.6))
    return meta["queue"]


def _model_folder(root: Path, *, seed: str, version: str, accuracy: float) -> Path:
    from pipelines.artifacts import build_manifest, write_model_card

    folder = root / seed
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\x00weights-" + seed.encode() * 40)
    (folder / "config.json").write_text('{"hidden_size": 8, "seed": "%s"}\n' % seed)
    (folder / "tokenizer" / "tokenizer.json").write_text('{"vocab": ["[PAD]", "a"]}\n')
    manifest = build_manifest(
        folder, domain="legal", task="classification", kind="weekly", version=version, parent=None,
        data=[{"interval": WEEK.name, "version": "v1", "digest": "d" * 64, "rows": 2}], code_version="git:test",
        dp={"epsilon": 0.5, "delta": 1e-5, "noise_multiplier": 1.1, "sample_rate": 0.1, "steps": 10,
            "accountant": "prv", "max_grad_norm": 1.0, "ledger_key": "privacy/ledger/legal/run-a.json"},
        metrics={"accuracy": accuracy, "macro_f1": accuracy - 0.05}, created_by="test", created_at=WHEN)
    write_model_card(folder, manifest, [{"epoch": 1, "loss": 0.9}, {"epoch": 2, "loss": 0.6}],
                     epsilon_points=[(WHEN, 0.25), (WHEN + dt.timedelta(days=7), 0.5)])
    return folder


def push_models(store, root: Path) -> list[str]:
    """Three legal artifacts 1.0, 1.1, 1.2; 1.0 then 1.1 promoted (1.1 is production). Returns their ids."""
    from pipelines.artifacts import evaluate_gate, promote, push_artifact

    refs = [push_artifact(store, _model_folder(root, seed=f"m{i}", version=f"1.{i}", accuracy=0.7 + i / 100),
                          domain="legal") for i in range(3)]
    production = None
    for i, ref in enumerate(refs[:2]):
        candidate = {"accuracy": 0.7 + i / 100}
        gate = evaluate_gate(candidate=candidate, production=production, metric="accuracy", max_drop=0.05)
        promote(store, "legal", ref, gate=gate, who="airflow:test", why=f"weekly run {i}",
                now=WHEN + dt.timedelta(days=i))
        production = candidate
    return [r.artifact_id for r in refs]


def write_ledger(config, store) -> None:
    """Two completed legal runs (one per week) and one reservation released (refused) with a reason."""
    from pipelines.privacy import complete_run, entry_key, plan_run, release_budget, reserve_budget

    pconfig = config.for_domain("legal").require_privacy()
    for run_id, weeks in (("weekly-legal-1", [WEEK.name]), ("weekly-legal-2", [WEEK.name, WEEK2.name])):
        plan = plan_run(config=pconfig, store=store, domain="legal", kind="weekly", partitions=weeks,
                        sample_rate=0.1, steps=20)
        entry = reserve_budget(config=pconfig, store=store, plan=plan, run_id=run_id, created_by="airflow:test")
        complete_run(config=pconfig, store=store, domain="legal", run_id=run_id, steps=20, epsilon=entry.epsilon)
    plan = plan_run(config=pconfig, store=store, domain="legal", kind="weekly", partitions=[WEEK2.name],
                    sample_rate=0.1, steps=20)
    store.put(entry_key(config=pconfig, domain="legal", run_id="weekly-legal-3"),
              (json.dumps(plan.entry(run_id="weekly-legal-3", created_by="airflow:test").to_json()) + "\n").encode(),
              if_none_match=True)
    release_budget(config=pconfig, store=store, domain="legal", run_id="weekly-legal-3",
                   reason="the reserving task crashed before the decision", by="on-call")


def build_world(config, store, tmp: Path) -> dict:
    """Everything above; returns the keys and ids the tests assert on."""
    publish_week(config, store)
    queue = write_review_queue(store)
    artifacts = push_models(store, tmp / "models")
    write_ledger(config, store)
    return {"queue": queue, "artifacts": artifacts}


def world_config(root: Path):
    """The project's config on the local folder store ``root`` (``file://``; the bucket is a folder in it)."""
    import os

    from pipelines.config import load_config

    environ = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE")}
    environ["PIPELINE_S3_ENDPOINT_URL"] = f"file://{root}"
    return load_config(environ=environ)


_BUILT: dict[str, object] = {}


def world_copy(dest: Path, cache: Path) -> tuple[object, object, dict]:
    """A fresh copy of the world in ``dest`` (built once into ``cache``); returns ``(config, store, world)``."""
    import shutil

    from pipelines.storage import LocalObjectStore

    if str(cache) not in _BUILT:  # one build per cache folder
        config = world_config(cache)
        _BUILT[str(cache)] = build_world(config, LocalObjectStore(cache / config.storage.bucket), cache / "work")
    shutil.copytree(cache, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("work"))
    config = world_config(dest)
    return config, LocalObjectStore(dest / config.storage.bucket), dict(_BUILT[str(cache)])
