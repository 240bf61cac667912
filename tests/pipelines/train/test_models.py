"""Model folders: build, load, save round trips; the sample series."""

from __future__ import annotations

import json

import pytest

from pipelines.modeling import ModelFolderError, load_model, save_model
from pipelines.train.models import build_base_model, make_sample_series, series_windows


def _tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_classifier_folder_round_trip(classifier_dir, tmp_path):
    import torch

    loaded = load_model(classifier_dir)
    assert (loaded.task, loaded.labels) == ("classification", ("neg", "pos"))
    names = sorted(p.name for p in classifier_dir.iterdir())
    assert names == ["config.json", "model.safetensors", "pipeline_model.json", "tokenizer.json",
                     "tokenizer_config.json"]
    descriptor = json.loads((classifier_dir / "pipeline_model.json").read_text())
    assert descriptor["format"] == "pipelines.train/1" and descriptor["labels"] == ["neg", "pos"]
    before = loaded.predict(["good great the item", "awful worst this"])
    again = load_model(save_model(loaded, loaded.model, tmp_path / "copy", extra={"note": 1}))
    assert again.predict(["good great the item", "awful worst this"]) == before
    assert again.config["note"] == 1
    a, b = _tensors(classifier_dir), _tensors(tmp_path / "copy")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Opacus refuses tied weights: the saved config says so.
    assert json.loads((classifier_dir / "config.json").read_text())["tie_word_embeddings"] is False


def test_causal_lm_folder_is_untied_llama(lm_dir):
    loaded = load_model(lm_dir)
    assert loaded.task == "causal_lm" and loaded.labels == ()
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert loaded.model.config.tie_word_embeddings is False
    assert loaded.model.lm_head.weight.data_ptr() != loaded.model.model.embed_tokens.weight.data_ptr()
    assert isinstance(loaded.generate("where is my order?", max_new_tokens=3), str)


def test_forecaster_round_trip_and_sample_series(tmp_path):
    import torch

    series = make_sample_series(3, 4, length=40)
    assert make_sample_series(3, 2, length=40) == series[:2]  # series i depends on (seed, i) only
    assert len(series) == 4 and all(len(s) == 40 and min(s) > 0 for s in series)
    assert make_sample_series(4, 1, length=40) != series[:1]
    train, held = series_windows(series, window=8, eval_tail=5)
    assert (len(train), len(held)) == (4 * 27, 4 * 5)
    assert held[0] == {"id": "s0t35", "window": series[0][27:35], "target": series[0][35]}
    folder = build_base_model(task="forecast", texts_or_series=series, out_dir=tmp_path / "f", seed=1)
    loaded = load_model(folder)
    first = loaded.forecast([series[0][:8]])
    assert load_model(folder).forecast([series[0][:8]]) == first
    assert set(_tensors(folder)) == {n for n, _ in loaded.model.named_parameters()}
    assert not torch.isnan(torch.tensor(first)).any()


def test_errors_say_what_to_do(tmp_path, classifier_dir):
    with pytest.raises(ModelFolderError, match="pipeline_model.json not found"):
        load_model(tmp_path)
    with pytest.raises(FileExistsError, match="not empty"):
        build_base_model(task="classification", texts_or_series=["a b"], labels=["x", "y"], out_dir=classifier_dir)
    with pytest.raises(ValueError, match="at least two distinct labels"):
        build_base_model(task="classification", texts_or_series=["a b"], labels=["x"], out_dir=tmp_path / "n")
    with pytest.raises(ValueError, match="task='regression'"):
        build_base_model(task="regression", texts_or_series=["a"], out_dir=tmp_path / "r")
