"""Bring your own pretrained model: snapshot folders of real architectures imported, DP-trained, promoted, served.

Each family is a tiny random-init snapshot (``benchmarks.snapshots``: config, safetensors, a locally trained
tokenizer, a ChatML template for causal LMs) imported with ``model import-base`` onto a local folder store, then one
weekly run of the project's trainer (book-keeping clipping, LoRA for causal LMs), promoted with a forced gate
(random weights cannot beat the trivial baseline), fetched and served. Refusals: pickled weights, custom code, a
task mismatch, ``full`` on mixture-of-experts and on tied embeddings.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.snapshots import build_snapshot
from pipelines.artifacts import fetch_artifact, force_gate, load_ref, production_ref, promote, verify_artifact
from pipelines.cli import main as cli
from pipelines.config import PROJECT_ROOT, load_config
from pipelines.finetune import RunRequest, base_ref, plan_run, train_run
from pipelines.modeling import causal_example_ids, load_model, text_inputs
from pipelines.partition import Interval
from pipelines.storage import LocalObjectStore

from _evaluation import upload_evaluation_sets
from pipelines.train.snapshot import SnapshotError, check_method, inspect_snapshot
from pipelines.weekly import PartitionRef, process_partition

WEEK = Interval.parse("2026-10-04_2026-10-11")
SAMPLE = PROJECT_ROOT / "data" / "sample" / "landing"
DOMAIN = {"classification": "product_reviews", "causal_lm": "customer_service"}
TASK = {"llama": "causal_lm", "qwen2": "causal_lm", "mistral": "causal_lm", "qwen3_moe": "causal_lm",
        "bert": "classification", "roberta": "classification", "xlm-roberta": "classification"}


def curate(config, store, domain: str) -> None:
    upload_evaluation_sets(config, store, only=(domain,))  # what `sample load` does: the gate's public set
    for folder in sorted((SAMPLE / domain).iterdir()):
        if WEEK.start.isoformat() <= folder.name < WEEK.end.isoformat():
            for path in sorted(folder.iterdir()):
                store.put(f"landing/{domain}/{folder.name}/{path.name}", path.read_bytes())
    assert process_partition(config=config, store=store, part=PartitionRef(domain=domain, interval=WEEK))["published"]


def import_train_promote_serve(config, store, domain: str, source: str, capsys) -> tuple[dict, object]:
    """``model import-base`` through the CLI, one DP run, a forced promotion; returns (import output, served model)."""
    assert cli(["model", "import-base", "--domain", domain, "--from", source, "--revision", "r1",
                "--licence", "apache-2.0", "--who", "test"]) == 0
    imported = json.loads(capsys.readouterr().out)
    base = base_ref(config=config, store=store, domain=domain)
    assert base is not None and base.artifact_id == imported["artifact_id"]
    manifest = verify_artifact(store, base)
    provenance = manifest["metrics"]["provenance"]
    assert (provenance["source"], provenance["revision"], provenance["licence"]) == (source, "r1", "apache-2.0")
    assert "model.safetensors" in provenance["files"] and all(len(h) == 64 for h in provenance["files"].values())
    assert "model_card.md" in manifest["files"]

    request = RunRequest(domain=domain, kind="weekly", run_id=f"weekly-{domain}-1", requested_by="test")
    trained = train_run(config=config, store=store, plan=plan_run(config=config, store=store, request=request),
                        log_every=1)
    assert trained.steps > 0
    ref = load_ref(store, domain, trained.artifact_id)
    assert verify_artifact(store, ref)["parent"] == base.artifact_id
    promote(store, domain, ref, gate=force_gate(reason="random-init test snapshot cannot beat the baseline"),
            who="test", why="import test")
    served = production_ref(store, domain)
    assert served.artifact_id == ref.artifact_id
    return imported, load_model(fetch_artifact(store, served, store.root.parent / "served" / domain))


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_training):
    monkeypatch.setenv("PIPELINE_S3_ENDPOINT_URL", f"file://{tmp_path / 'store'}")
    monkeypatch.setenv("PIPELINE__TRAINING__GRAD_SAMPLE_MODE", "bk")
    monkeypatch.setenv("PIPELINE__TRAINING__SECURE_MODE", "false")
    return tmp_path


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "qwen3_moe", "bert", "roberta", "xlm-roberta"])
def test_family_imports_trains_under_dp_promotes_and_serves(env, monkeypatch, capsys, family):
    task = TASK[family]
    # Causal LMs train LoRA (qwen2 ties its embeddings, qwen3_moe fuses its experts); encoders the domain's recipe.
    monkeypatch.setenv("PIPELINE__TRAINING__METHOD", "lora" if task == "causal_lm" else "full")
    config = load_config()
    store = LocalObjectStore(env / "store" / config.storage.bucket)
    domain = DOMAIN[task]
    curate(config, store, domain)
    snapshot = build_snapshot(family, env / "snapshot")
    imported, loaded = import_train_promote_serve(config, store, domain, str(snapshot), capsys)
    assert imported["model_type"] == family
    if task == "classification":
        [(label, score)] = loaded.predict(["质量很好，物流也很快"])
        assert label in loaded.labels and 0.0 < score <= 1.0
        assert loaded.labels == tuple(imported["labels"])
    else:
        answer = loaded.generate("How do I reset my password?", max_new_tokens=6)
        assert isinstance(answer, str)
        assert loaded.chat and loaded.model.generation_config.eos_token_id == [
            loaded.tokenizer.convert_tokens_to_ids("<|im_end|>"), loaded.tokenizer.convert_tokens_to_ids("<|endoftext|>")]


def test_chat_examples_put_the_loss_on_the_assistant_turn_only(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(build_snapshot("qwen2", tmp_path / "s")))
    end = tok.convert_tokens_to_ids("<|im_end|>")
    prompt, answer = causal_example_ids(tok, "Hi?", "Hello.", stops=[end])
    assert tok.decode(prompt) == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(answer) == "Hello.<|im_end|>"


def test_roberta_positions_start_after_padding_and_no_token_types_for_decoders(tmp_path):
    import torch

    from pipelines.train.snapshot import prepare_base_folder

    folder, _ = prepare_base_folder(build_snapshot("roberta", tmp_path / "s"), tmp_path / "m", task="classification",
                                    labels=["a", "b"])
    loaded = load_model(folder)
    pad = loaded.model.config.pad_token_id
    ids = torch.tensor([[0, 7, 8, 2, pad, pad]])
    inputs = text_inputs(ids, ids.ne(pad).long(), task="classification", model=loaded.model)
    assert inputs["position_ids"].tolist() == [[pad + 1, pad + 2, pad + 3, pad + 4, pad, pad]]
    # The same positions as transformers computes when none are given: the logits agree.
    with torch.inference_mode():
        given = loaded.model(**inputs).logits
        default = loaded.model(input_ids=ids, attention_mask=inputs["attention_mask"]).logits
    assert torch.allclose(given, default, atol=1e-5)
    decoder = load_model(prepare_base_folder(build_snapshot("qwen2", tmp_path / "q"), tmp_path / "qm",
                                             task="causal_lm")[0])
    assert set(text_inputs(ids, torch.ones_like(ids), task="causal_lm", model=decoder.model)) == {
        "input_ids", "attention_mask", "position_ids"}


def test_refusals_say_why(tmp_path):
    moe = inspect_snapshot(build_snapshot("qwen3_moe", tmp_path / "moe"), task="causal_lm")
    assert moe.methods == ("lora",)
    with pytest.raises(SnapshotError, match=r"method 'full' is not possible \(layers .*not supported by per-sample"):
        check_method(moe, "full")
    tied = inspect_snapshot(build_snapshot("qwen2", tmp_path / "qwen2"), task="causal_lm")
    assert tied.tied_embeddings
    with pytest.raises(SnapshotError, match="ties its input embeddings and lm_head"):
        check_method(tied, "full")
    check_method(tied, "lora")
    (tmp_path / "qwen2" / ".gitattributes").write_text("*.safetensors filter=lfs\n")  # what a hub download leaves
    (tmp_path / "qwen2" / ".cache" / "huggingface").mkdir(parents=True)
    (tmp_path / "qwen2" / ".cache" / "huggingface" / "x.metadata").write_text("etag\n")
    assert ".gitattributes" not in inspect_snapshot(tmp_path / "qwen2", task="causal_lm").files
    with pytest.raises(SnapshotError, match="is an encoder; a causal_lm domain needs a decoder"):
        inspect_snapshot(build_snapshot("bert", tmp_path / "bert"), task="causal_lm")
    with pytest.raises(SnapshotError, match="not an encoder this project classifies with"):
        inspect_snapshot(tmp_path / "qwen2", task="classification")
    pickled = build_snapshot("llama", tmp_path / "pickled")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(SnapshotError, match="pickled weights .*pytorch_model.bin"):
        inspect_snapshot(pickled, task="causal_lm")
    custom = build_snapshot("llama", tmp_path / "custom")
    (custom / "modeling_custom.py").write_text("import os\n")
    with pytest.raises(SnapshotError, match="custom model code"):
        inspect_snapshot(custom, task="causal_lm")
    (custom / "modeling_custom.py").unlink()
    config = json.loads((custom / "config.json").read_text())
    (custom / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(SnapshotError, match="auto_map"):
        inspect_snapshot(custom, task="causal_lm")


def test_cli_refuses_full_on_moe_and_a_pickle_without_a_traceback(env, monkeypatch, capsys):
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "config" / "pipeline.yaml").read_text(encoding="utf-8"))
    raw["domains"]["customer_service"].setdefault("training", {})["method"] = "full"  # its recipe says lora
    (env / "full.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("PIPELINE_CONFIG", str(env / "full.yaml"))
    config = load_config()
    store = LocalObjectStore(env / "store" / config.storage.bucket)
    snapshot = build_snapshot("qwen3_moe", env / "moe")
    capsys.readouterr()
    assert cli(["model", "import-base", "--domain", "customer_service", "--from", str(snapshot)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot import: qwen3_moe: method 'full' is not possible") and "Traceback" not in err
    (snapshot / "model.bin").write_bytes(b"x")
    assert cli(["model", "import-base", "--domain", "customer_service", "--from", str(snapshot)]) == 2
    assert "pickled weights" in capsys.readouterr().err
    assert cli(["model", "import-base", "--domain", "customer_service", "--from", str(env / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert base_ref(config=config, store=store, domain="customer_service") is None  # nothing was published


def test_training_refuses_full_on_tied_embeddings_and_on_fused_experts(tmp_path):
    from pipelines.train.session import prepare
    from pipelines.train.snapshot import prepare_base_folder
    from pipelines.train.spec import TrainError, TrainSpec

    examples = [{"id": str(i), "question": "Where is my order?", "answer": "On its way."} for i in range(4)]
    for family, message in (("qwen2", "ties its input embeddings and lm_head"),
                            ("qwen3_moe", r"method 'full' cannot train this model under DP \(it supports \['lora'\]\)")):
        folder, _ = prepare_base_folder(build_snapshot(family, tmp_path / family), tmp_path / f"{family}-base",
                                        task="causal_lm")
        spec = TrainSpec(model_dir=str(folder), out_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ck"),
                         train_examples=examples, eval_examples=examples, noise_multiplier=1.0, delta=1e-3,
                         method="full", grad_sample_mode="bk")
        with pytest.raises(TrainError, match=message):
            prepare(spec, log=lambda line: None)
