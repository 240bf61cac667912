"""The ``training`` section: defaults, validation, and the spec it gives a weekly or monthly run."""

from __future__ import annotations

import pytest

from pipelines.config import ConfigError, build_stage_config
from pipelines.train.config import TrainingConfig, spec_from_config


def test_defaults_overrides_and_errors(tmp_path):
    cfg = build_stage_config(TrainingConfig, "training", {"epochs": 2, "method": "lora"})
    assert (cfg.epochs, cfg.method, cfg.monthly_min_learning_rate, cfg.eval_percent) == (2, "lora", 1e-6, 10)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epoch'\]"):
        build_stage_config(TrainingConfig, "training", {"epoch": 2})
    with pytest.raises(ConfigError, match="training.grad_sample_mode='fast'"):
        TrainingConfig(grad_sample_mode="fast")
    lexicon = tmp_path / "terms.txt"
    lexicon.write_text("# legal terms\nplaintiff\n\ntort  # civil wrong\n", encoding="utf-8")
    assert TrainingConfig(weight_terms_file=str(lexicon)).weight_terms() == ("plaintiff", "tort")


def test_monthly_spec_decays_to_1e6():
    cfg = TrainingConfig()
    common = dict(model_dir="m", out_dir="o", checkpoint_dir="c", train_path="t.jsonl", eval_path="e.jsonl",
                  noise_multiplier=1.1, delta=1e-6)
    weekly, monthly = spec_from_config(cfg, **common), spec_from_config(cfg, kind="monthly", **common)
    assert (weekly.epochs, weekly.learning_rate, weekly.min_learning_rate) == (3, 5e-4, 0.0)
    assert (monthly.epochs, monthly.learning_rate, monthly.min_learning_rate) == (5, 1e-3, 1e-6)
    assert monthly.noise_multiplier == 1.1 and monthly.num_threads is None
