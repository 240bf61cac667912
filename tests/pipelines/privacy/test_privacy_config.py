"""PrivacyConfig: seeds, precedence of the YAML blocks, and validation messages that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, load_config
from pipelines.privacy import SEED_DEFAULTS, PrivacyConfig

ROOT = Path(__file__).resolve().parents[3]


def _raw() -> dict:
    """The project's config without its privacy settings: these tests are about the seeds and the precedence."""
    raw = yaml.safe_load((ROOT / "config" / "pipeline.yaml").read_text())
    raw.pop("privacy", None)
    for block in raw["domains"].values():
        block.pop("privacy", None)
    return raw


def _config(tmp_path, *, privacy=None, domain_blocks=None):
    raw = _raw()
    if privacy is not None:
        raw["privacy"] = privacy
    for name, block in (domain_blocks or {}).items():
        raw["domains"][name]["privacy"] = block
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path, environ={})


def test_seed_budgets_per_domain(tmp_path):
    config = _config(tmp_path)
    got = {d: (config.for_domain(d).require_privacy().epsilon, config.for_domain(d).require_privacy().delta)
           for d in ("medical", "legal", "finance", "customer_service")}
    assert got == {"medical": (0.5, 1e-5), "legal": (2.0, 1e-5), "finance": (3.0, 1e-5),
                   "customer_service": (8.0, 1e-5)}
    medical = config.for_domain("medical").require_privacy()
    assert (medical.weekly_share, medical.weekly_epsilon, medical.monthly_epsilon) == (0.4, 0.1, 0.1)
    assert (medical.accountant, medical.secure_mode, medical.ledger_prefix) == ("prv", True, "privacy/ledger")
    assert medical.weekly_budget == pytest.approx(0.2) and medical.monthly_budget == pytest.approx(0.3)


def test_every_seed_is_valid():
    for domain, values in SEED_DEFAULTS.items():
        cfg = PrivacyConfig(**values)
        assert cfg.weekly_epsilon <= cfg.weekly_budget and cfg.monthly_epsilon <= cfg.monthly_budget, domain


def test_domain_block_overrides_section_which_overrides_seed(tmp_path):
    config = _config(tmp_path, privacy={"delta": 1e-6, "accountant": "rdp"},
                     domain_blocks={"medical": {"epsilon": 0.8, "monthly_epsilon": 0.2}})
    medical = config.for_domain("medical").require_privacy()
    assert (medical.epsilon, medical.delta, medical.accountant, medical.weekly_epsilon, medical.monthly_epsilon) == \
        (0.8, 1e-6, "rdp", 0.1, 0.2)
    assert config.for_domain("legal").require_privacy().delta == 1e-6


def test_domain_without_seed_needs_an_epsilon(tmp_path):
    config = _config(tmp_path)
    with pytest.raises(ConfigError, match=r"privacy.epsilon is required"):
        config.for_domain("product_reviews").require_privacy()
    config = _config(tmp_path, domain_blocks={"product_reviews": {"epsilon": 4}})
    reviews = config.for_domain("product_reviews").require_privacy()
    # Unset targets: half the weekly share, a third of the monthly share.
    assert reviews.weekly_epsilon == pytest.approx(0.8) and reviews.monthly_epsilon == pytest.approx(0.8)


def test_environment_overrides_section(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_raw()))
    config = load_config(path, environ={"PIPELINE__PRIVACY__SECURE_MODE": "false", "PIPELINE__PRIVACY__DELTA": "1e-7"})
    medical = config.for_domain("medical").require_privacy()
    assert (medical.secure_mode, medical.delta) == (False, 1e-7)


@pytest.mark.parametrize(("values", "message"), [
    ({"epsilon": 0}, r"privacy.epsilon=0.0: use a finite number > 0"),
    ({"epsilon": 1, "delta": 1}, r"privacy.delta=1.0: use 0 < delta < 1"),
    ({"epsilon": 1, "weekly_share": 1.0}, r"privacy.weekly_share=1.0"),
    ({"epsilon": 1, "weekly_epsilon": 0.5}, r"privacy.weekly_epsilon=0.5 exceeds its share"),
    ({"epsilon": 1, "monthly_epsilon": 0.7}, r"privacy.monthly_epsilon=0.7 exceeds its share"),
    ({"epsilon": 1, "accountant": "gdp"}, r"privacy.accountant='gdp'"),
    ({"epsilon": 1, "max_grad_norm": 0}, r"privacy.max_grad_norm=0"),
    ({"epsilon": 1, "ledger_prefix": "/privacy/"}, r"privacy.ledger_prefix"),
    ({"epsilon": 1, "secure_mode": "yes"}, r"privacy.secure_mode=.yes."),
    ({"epsilon": "lots"}, r"privacy.epsilon=.lots.: expected a number"),
])
def test_invalid_values_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        PrivacyConfig(**values)


def test_unknown_key_is_refused_when_the_file_loads(tmp_path):
    with pytest.raises(ConfigError, match=r"^domains\.medical\.privacy: unknown key\(s\) \['epsilom'\] "
                                          r"\(domains\.medical\.privacy\.epsilom\)"):
        _config(tmp_path, domain_blocks={"medical": {"epsilom": 1}})
    with pytest.raises(ConfigError, match=r"^privacy: unknown key\(s\) \['detla'\] \(privacy\.detla\)"):
        _config(tmp_path, privacy={"detla": 1e-6})


def test_bad_value_fails_when_the_file_loads_naming_the_domain(tmp_path):
    with pytest.raises(ConfigError, match=r"^privacy.accountant='gdp': use one of \('prv', 'rdp'\) "
                                          r"\(effective settings of domain 'medical'\)$"):
        _config(tmp_path, domain_blocks={"medical": {"accountant": "gdp"}})


def test_secure_mode_needs_torchcsprng_which_is_not_installed_here():
    from pipelines.privacy import check_secure_mode

    with pytest.raises(ConfigError, match="torchcsprng"):
        check_secure_mode(PrivacyConfig(epsilon=1.0, secure_mode=True))
    check_secure_mode(PrivacyConfig(epsilon=1.0, secure_mode=False))


def test_dp_training_settings_is_the_one_source_and_checks_secure_mode():
    from pipelines.privacy import DPTrainingSettings, dp_training_settings

    with pytest.raises(ConfigError, match="torchcsprng"):
        dp_training_settings(PrivacyConfig(epsilon=1.0))  # secure_mode defaults to true
    settings = dp_training_settings(PrivacyConfig(epsilon=1.0, secure_mode=False, max_grad_norm=0.5, accountant="rdp"))
    assert settings == DPTrainingSettings(secure_mode=False, poisson_sampling=True, max_grad_norm=0.5,
                                          accountant="rdp")


def test_fixed_batches_are_refused_outside_tests(monkeypatch):
    assert PrivacyConfig(epsilon=1.0, poisson_sampling=False).poisson_sampling is False  # inside a test: allowed
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    with pytest.raises(ConfigError, match=r"privacy.poisson_sampling=false trains on fixed shuffled batches"):
        PrivacyConfig(epsilon=1.0, poisson_sampling=False)


@pytest.mark.parametrize("value", [0, True, "2"])
def test_contribution_bound_must_be_a_positive_integer(value):
    with pytest.raises(ConfigError, match="privacy.max_records_per_subject"):
        PrivacyConfig(epsilon=1.0, max_records_per_subject=value)


def test_medical_and_customer_service_bound_contributions_per_subject_by_default(tmp_path):
    config = _config(tmp_path)
    assert {d: config.for_domain(d).require_privacy().max_records_per_subject
            for d in ("medical", "legal", "finance", "customer_service")} == \
        {"medical": 1, "legal": None, "finance": None, "customer_service": 2}
