"""The ``artifacts`` section: trivial-baseline margins per task, public evaluation sets per slot, the trivial gate."""

from __future__ import annotations

import pytest

from pipelines.config import ArtifactsConfig, ConfigError, load_config
from pipelines.config.artifacts import EvaluationSet


def test_margins_default_per_task_and_are_overridden_per_task():
    assert [ArtifactsConfig().margin_for(t) for t in ("classification", "causal_lm", "forecast")] == [0.02, 0.05, 0.05]
    config = ArtifactsConfig(baseline_margin={"causal_lm": 0.1})
    assert (config.margin_for("classification"), config.margin_for("causal_lm")) == (0.02, 0.1)


@pytest.mark.parametrize("values, message", [
    ({"baseline_margin": {"regression": 0.1}}, r"baseline_margin.regression: unknown task"),
    ({"baseline_margin": {"classification": 1.5}}, r"baseline_margin.classification=1.5: use a fraction"),
    ({"evaluation": {"legal": {"source": "private", "key": "k"}}}, r"evaluation.legal: .*source='private'"),
    ({"evaluation": {"legal": {"source": "public"}}}, r"exactly one of key .* or path"),
    ({"evaluation": {"legal": {"key": "k", "bucket": "b"}}}, r"unknown key\(s\) \['bucket'\]"),
    ({"evaluation": {"legal": {"key": "../x"}}}, r"use a relative object key"),
])
def test_bad_artifacts_values_fail_when_the_file_loads(values, message):
    with pytest.raises(ConfigError, match=message):
        ArtifactsConfig(**values)


def test_the_project_config_names_a_public_set_for_every_domain():
    config = load_config()
    assert {d: config.artifacts.evaluation_for(d) for d in config.domains} == {
        d: EvaluationSet(source="public", key=f"evaluation/{d}/eval.jsonl") for d in config.domains}
    assert config.artifacts.evaluation_for("finance_forecast") is None  # generated public series


def test_the_trivial_gate_can_be_turned_off_only_inside_tests(monkeypatch):
    assert ArtifactsConfig(trivial_gate=False).trivial_gate is False
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    with pytest.raises(ConfigError, match="trivial_gate=false would promote a model that learned nothing"):
        ArtifactsConfig(trivial_gate=False)
