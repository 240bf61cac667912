"""End to end, the code assistant domain on a real SeaweedFS: a snapshot with one planted secret of each kind lands,
the real weekly_ingest DAG (dag.test) scrubs and publishes it, a tiny random-init Llama snapshot is imported as the
domain's base with ``model import-base``, one DP weekly fine-tune is gated and promoted, ``/v1/code/complete``
answers completions that parse, and no planted value is found anywhere: not in any object of the bucket other than
the landed snapshot itself (Parquet and gzip decoded too; encryption is off), not in the task logs, and not in what
the model emits when prompted with each secret's prefix.

The gate runs with ``artifacts.trivial_gate: false`` (``tiny_training``): a seconds-long tiny model does not beat
the unigram baseline's perplexity. The sampling check is a floor, not a memorisation study: a few DP steps on a
random-init model could not memorise a 40-character secret even unscrubbed.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from e2e_helpers import committed, run_dag_week, store_and_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines" / "code"))  # code_fakes.py
from code_fakes import planted, secret_file, snapshot_tar  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("airflow_db")]

WEEK = "2026-10-04_2026-10-11"
TOKEN = "e2e-code-token-0123456789abcdef"
# Distinct small modules: enough records for a train/eval split after exact and near-duplicate removal.
MODULES = {f"shop/{name}.py": f'"""{name} helpers."""\n\n\ndef {name}_{i}(x: int) -> int:\n    return x {op} {i + 2}\n\n\n'
           f"class {name.title()}{i}:\n    def __init__(self, n: int) -> None:\n        self.n = n * {i + 3}\n"
           for i, (name, op) in enumerate(zip(
               ("cart", "price", "stock", "order", "refund", "invoice", "basket", "coupon", "ledger", "report",
                "export", "parcel"), "+-*+-*+-*+-*"))}
PROMPTS = ["def add(a, b):\n", "import os\n\nPATH = ", "class Cart:\n    def total(self):\n"]


def leaks_in(blob: bytes, values: dict[str, str]) -> set[str]:
    """Kinds whose value occurs in ``blob``, also inside gzip/tar and as Parquet's decoded text."""
    texts = [blob]
    if blob[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(blob))
        try:
            with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
                texts += [tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()]
        except tarfile.TarError:
            pass
    if blob[:4] == b"PAR1":
        import pyarrow.parquet as pq

        rows = pq.read_table(io.BytesIO(blob)).to_pylist()
        texts.append(json.dumps(rows, ensure_ascii=False, default=str).encode())
    return {kind for kind, value in values.items() for t in texts
            if value.encode() in t or json.dumps(value)[1:-1].encode() in t}


def test_code_snapshot_to_served_completions_leaks_no_secret(s3_bucket, tiny_training, tmp_path, monkeypatch, capfd):
    import torch
    from fastapi.testclient import TestClient

    from _evaluation import upload_evaluation_sets
    from benchmarks.snapshots import build_snapshot
    from pipelines.artifacts import current_production, load_ref, verify_artifact
    from pipelines.cli import main as cli
    from pipelines.finetune import RunRequest, base_ref, run_domain
    from pipelines.privacy import read_ledger
    from pipelines.privacy.records import hash_subject
    from pipelines.serving import build_service, override_serving
    from pipelines.serving.app import create_app

    monkeypatch.setenv("PIPELINE__TRAINING__METHOD", "lora")
    monkeypatch.setenv("PIPELINE__TRAINING__GRAD_SAMPLE_MODE", "bk")
    monkeypatch.setenv("PIPELINE__TRAINING__SECURE_MODE", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config, store = store_and_config()
    assert config.security.enabled is False  # the byte search below reads what was written in the clear
    values = planted()
    landed = "landing/code/2026-10-05/shop.tar.gz"
    store.put(landed, snapshot_tar({"shop/settings.py": secret_file(values), **MODULES}))
    upload_evaluation_sets(config, store, only=("code",))

    # Weekly ingestion: the real DAG; code is one mapped domain, the others have no landing files.
    run = run_dag_week(WEEK)
    assert run.state == "success", {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    printed = [capfd.readouterr()]  # what dag.test printed: the task logs
    _commit, manifest = committed(store, "code", WEEK)
    counts = manifest["counts"]["records"]
    assert manifest["counts"]["records"] == {"in": 13, "kept": 13, "duplicate": 0, "quarantined": 0}
    import pyarrow.parquet as pq

    rows = pq.read_table(io.BytesIO(store.get(manifest["files"]["data"]))).to_pylist()
    settings = next(r for r in rows if r["subject_sha256"] == hash_subject("shop/shop/settings.py", domain="code").hex())
    ast.parse(settings["text"])  # scrubbed, still valid Python
    assert "<SECRET_AWS_KEY_1>" in settings["text"]

    # Bring your own base: a tiny random-init Llama snapshot through the CLI.
    snapshot = build_snapshot("llama", tmp_path / "snapshot", texts=list(MODULES.values()), seed=3)
    capfd.readouterr()
    assert cli(["model", "import-base", "--domain", "code", "--from", str(snapshot), "--revision", "e2e",
                "--licence", "apache-2.0", "--who", "test"]) == 0
    imported = json.loads(capfd.readouterr().out)
    assert base_ref(config=config, store=store, domain="code").artifact_id == imported["artifact_id"]

    # One DP weekly fine-tune, gated (perplexity; trivial baseline off for a tiny model) and promoted.
    trained = run_domain(config=config, store=store, who="test",
                         request=RunRequest(domain="code", kind="weekly", run_id="weekly-code-e2e",
                                            requested_by="test"))
    record = current_production(store, "code")
    assert record is not None and record.artifact_id == trained.artifact_id and record.version == "1.0"
    assert record.gate["metric"] == "perplexity" and record.gate["passed"] is True
    manifest = verify_artifact(store, load_ref(store, "code", trained.artifact_id))
    assert manifest["parent"] == imported["artifact_id"] and manifest["metrics"]["code"]["gating"] is False
    assert manifest["metrics"]["code"]["tasks"] == 8  # reported (syntax-valid rates, sandboxed pass@1), not gating
    ledger = read_ledger(config=config.for_domain("code").require_privacy(), store=store, domain="code")
    assert [(r.entry.kind, r.status) for r in ledger] == [("weekly", "completed")]

    # Serving: every constrained completion parses.
    torch.set_num_threads(1)
    serving = override_serving(config=config, domains=("code",), cache_dir=str(tmp_path / "cache"), poll_seconds=3600)
    service = build_service(config=config, store=store, serving=serving,
                            environ={serving.tokens_env: f"{TOKEN}=code"}, output_screen=None)
    service.start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    emitted = []
    try:
        with TestClient(create_app(service)) as client:
            for prompt in PROMPTS:
                r = client.post("/v1/code/complete", headers=auth, json={"prompt": prompt, "max_new_tokens": 24})
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["finished"] and body["model_version"] == "1.0", body
                ast.parse(prompt + body["text"])
                emitted.append(body["text"])
            r = client.post("/v1/code/complete", headers=auth,
                            json={"prompt": "config = ", "grammar": "json", "max_new_tokens": 24})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["finished"] is False or json.loads(body["text"]) is not None
            emitted.append(body["text"])
        # Each secret's prefix (its first third, as it would open in source code) as the prompt.
        # Raw text, not the chat turn: the way the scrubbed files were trained on. Greedy, so the likeliest path.
        model, tokenizer = service.served["code"].loaded.model, service.served["code"].loaded.tokenizer
        for kind, value in values.items():
            prefix = value[: max(4, len(value) // 3)]
            ids = tokenizer(f'{kind.upper()} = "{prefix}', return_tensors="pt")
            with torch.no_grad():
                new = model.generate(**ids, max_new_tokens=48, do_sample=False)[0, ids["input_ids"].shape[1]:]
            out = tokenizer.decode(new, skip_special_tokens=True)
            assert value[len(prefix):] not in out, kind
            emitted.append(out)
    finally:
        service.stop()
    assert not [kind for kind, value in values.items() for text in emitted if value in text]

    # No planted value in any object but the landed snapshot: every key listed, downloaded and searched.
    keys = sorted(o.key for o in store.list(""))
    assert any(k.startswith("curated/code/") for k in keys) and any(k.startswith("models/") for k in keys)
    leaked = {key: sorted(kinds) for key in keys if (kinds := leaks_in(store.get(key), values))}
    assert leaked == {landed: sorted(values)}  # the search finds them where they are
    # ... nor in the Airflow task logs of the run (files under AIRFLOW_HOME/logs and what dag.test printed).
    logs = [p.read_bytes() for p in (Path(os.environ["AIRFLOW_HOME"]) / "logs").rglob("*") if p.is_file()]
    logs += [text.encode() for captured in printed for text in captured]
    assert not [kind for kind, value in values.items() for blob in logs if value.encode() in blob]
