"""load_config: the default file, environment overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from pipelines.config import DEFAULT_CONFIG_PATH, ConfigError, DomainConfig, load_config


def default_raw() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_default_file_loads():
    config = load_config(environ={})
    assert config.source_path == DEFAULT_CONFIG_PATH
    assert sorted(config.domains) == ["code", "customer_service", "finance", "legal", "medical", "product_reviews"]
    customer_service = config.domain("customer_service")
    assert dataclasses.replace(customer_service, training={}) == DomainConfig(
        name="customer_service", task="causal_lm", languages=("zh", "en"), privacy={"epsilon": 8.0, "delta": 1e-5})
    assert (customer_service.training["base"], customer_service.training["method"]) == ("scratch", "lora")
    assert config.domain("medical").privacy["epsilon"] == 0.5
    assert config.storage.bucket == "mlops-data"
    assert config.dedup.buckets == 256
    assert config.dedup.compact_after == 8
    assert config.ingest.encodings == ("utf-8", "gb18030")
    assert [(s.name, s.kind) for s in config.ingest.sources] == [("files", "files"), ("feedback", "feedback")]
    assert config.ingest.sources[0].prefix_for("legal") == "legal"
    assert (config.feedback.train_min_rating, config.feedback.review_max_rating) == (4, 2)
    assert config.alerts.email_to == ()
    assert config.validation.suite.is_file()


def test_pipeline_config_env_names_the_file(tmp_path):
    raw = default_raw()
    raw["domains"] = {"legal": {"task": "classification"}}
    path = write(tmp_path, raw)
    config = load_config(environ={"PIPELINE_CONFIG": str(path)})
    assert config.source_path == path
    assert list(config.domains) == ["legal"]


def test_env_overrides():
    config = load_config(environ={"PIPELINE__DEDUP__BUCKETS": "64", "PIPELINE_BUCKET": "prod-data",
                                  "PIPELINE_S3_ENDPOINT_URL": "", "PIPELINE__ALERTS__EMAIL_TO": "a@x.io,b@x.io"})
    assert config.dedup.buckets == 64
    assert config.dedup.compact_after == 8
    assert config.storage.bucket == "prod-data"
    assert config.storage.endpoint_url == ""
    assert config.alerts.email_to == ("a@x.io", "b@x.io")


def test_double_underscore_bucket_override():
    assert load_config(environ={"PIPELINE__STORAGE__BUCKET": "other-bucket"}).storage.bucket == "other-bucket"


@pytest.mark.parametrize(("environ", "message"), [
    ({"PIPELINE_BUCKET": "Bad_Bucket"}, "storage.bucket='Bad_Bucket' is not a valid S3 bucket name"),
    ({"PIPELINE__STORAGE__LANDING_PREFIX": "/landing"}, "storage.landing_prefix='/landing'"),
    ({"PIPELINE__NOPE__X": "1"}, "unknown section(s) ['nope']"),
    ({"PIPELINE__DEDUP__SHARDS": "4"}, "dedup: unknown key(s) ['shards']"),
    ({"PIPELINE__DEDUP__BUCKETS": "0"}, "dedup.buckets=0: use 1..65536"),
    ({"PIPELINE__DEDUP__COMPACT_AFTER": "1"}, "dedup.compact_after=1: use >= 2"),
    ({"PIPELINE__FEEDBACK__TRAIN_MIN_RATING": "2"}, "feedback: need 1 <= review_max_rating < train_min_rating <= 5"),
    ({"PIPELINE__INGEST__ENCODINGS": "[utf-8, klingon]"}, "ingest.encodings: unknown encoding 'klingon'"),
    ({"PIPELINE__DEDUP": "1"}, "PIPELINE__DEDUP: use PIPELINE__<SECTION>__<KEY>"),
])
def test_invalid_env_values_name_the_key(environ, message):
    with pytest.raises(ConfigError) as info:
        load_config(environ=environ)
    assert message in str(info.value)


def test_task_not_in_tasks(tmp_path):
    raw = default_raw()
    raw["domains"]["legal"]["task"] = "regression"
    with pytest.raises(ConfigError, match=r"domains\.legal\.task='regression': use one of \('classification', 'causal_lm'\)"):
        load_config(write(tmp_path, raw), environ={})


@pytest.mark.parametrize(("change", "message"), [
    ({"legal": {"languages": ["fr"]}}, "domains.legal.languages: unknown ['fr']"),
    ({"legal": {"tsk": "causal_lm"}}, "domains.legal: unknown key(s) ['tsk']"),
    ({"Legal": {}}, "domains: 'Legal' must match"),
    ({"feedback": {}}, "domains: 'feedback' must match"),
])
def test_invalid_domains(tmp_path, change, message):
    raw = default_raw()
    raw["domains"] = change
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, raw), environ={})
    assert message in str(info.value)


def test_no_domains(tmp_path):
    raw = default_raw()
    raw["domains"] = {}
    with pytest.raises(ConfigError, match="domains is empty"):
        load_config(write(tmp_path, raw), environ={})


def test_new_domain_is_a_config_change_only(tmp_path):
    raw = default_raw()
    raw["domains"]["insurance"] = {"task": "causal_lm", "languages": ["zh", "en"]}
    config = load_config(write(tmp_path, raw), environ={})
    assert len(config.domains) == 7
    assert config.domain("insurance") == DomainConfig(name="insurance", task="causal_lm", languages=("zh", "en"))


def test_unknown_domain_lists_the_configured_ones():
    with pytest.raises(ConfigError, match="unknown domain 'insurance'; configured: code, customer_service, finance, legal, "
                                          "medical, product_reviews"):
        load_config(environ={}).domain("insurance")


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"config file {missing} not found"):
        load_config(missing, environ={})


def test_invalid_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad, environ={})
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad, environ={})


def test_missing_suite_file(tmp_path):
    raw = default_raw()
    raw["validation"]["suite"] = str(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="validation.suite: .*missing.json does not exist"):
        load_config(write(tmp_path, raw), environ={})


def test_numeric_bucket_name_from_env_stays_a_string():
    # "123" is a valid S3 bucket name; the override must not turn it into the YAML integer 123.
    assert load_config(environ={"PIPELINE__STORAGE__BUCKET": "123"}).storage.bucket == "123"


def test_domain_that_is_not_a_mapping_is_a_config_error(tmp_path):
    raw = default_raw()
    raw["domains"]["legal"] = "classification"
    with pytest.raises(ConfigError, match="domains.legal"):
        load_config(write(tmp_path, raw), environ={})


def test_stage_sections_are_typed_and_domain_blocks_kept_as_written(tmp_path):
    from dataclasses import dataclass

    from pipelines.config import TrainingConfig, build_stage_config

    raw = default_raw()
    raw["training"] = {"seed": 3}
    raw["domains"]["legal"]["privacy"] = {"epsilon": 2.0}
    config = load_config(write(tmp_path, raw), environ={"PIPELINE__TRAINING__EPOCHS": "4"})
    assert config.training == TrainingConfig(seed=3, epochs=4)
    assert config.domain("legal").privacy == {"epsilon": 2.0}

    @dataclass(frozen=True)
    class Training:
        seed: int = 0
        epochs: int = 1

    assert build_stage_config(Training, "training", {"seed": 3, "epochs": 4}) == Training(seed=3, epochs=4)
    with pytest.raises(ConfigError, match=r"training: unknown key\(s\) \['colour'\]"):
        build_stage_config(Training, "training", {"colour": "red"})


@pytest.mark.parametrize(("path", "message"), [
    (("training", "lerning_rate"),
     r"^training: unknown key\(s\) \['lerning_rate'\] \(training\.lerning_rate\); known: "),
    (("privacy", "detla"), r"^privacy: unknown key\(s\) \['detla'\] \(privacy\.detla\); known: "),
    (("artifacts", "maxdrop"), r"^artifacts: unknown key\(s\) \['maxdrop'\] \(artifacts\.maxdrop\); known: "),
    (("serving", "prot"), r"^serving: unknown key\(s\) \['prot'\] \(serving\.prot\); known: "),
    (("security", "enabeld"), r"^security: unknown key\(s\) \['enabeld'\] \(security\.enabeld\); known: "),
    (("ops", "gpu_temp"), r"^ops: unknown key\(s\) \['gpu_temp'\] \(ops\.gpu_temp\); known: "),
    (("governance", "label", "shrae"),
     r"^governance\.label: unknown key\(s\) \['shrae'\] \(governance\.label\.shrae\); known: "),
    (("domains", "legal", "training", "epoch"),
     r"^domains\.legal\.training: unknown key\(s\) \['epoch'\] \(domains\.legal\.training\.epoch\); known: "),
    (("domains", "medical", "privacy", "epsilom"),
     r"^domains\.medical\.privacy: unknown key\(s\) \['epsilom'\] \(domains\.medical\.privacy\.epsilom\); "),
    (("governance", "clean", "min_char"),
     r"^governance\.clean: unknown key\(s\) \['min_char'\] \(governance\.clean\.min_char\); known: "),
    (("governance", "sensitive", "defualt"),
     r"^governance\.sensitive: unknown key\(s\) \['defualt'\] \(governance\.sensitive\.defualt\); known: "),
    (("domains", "legal", "governance", "pii", "kind"),
     r"^domains\.legal\.governance\.pii: unknown key\(s\) \['kind'\] \(domains\.legal\.governance\.pii\.kind\)"),
    (("domains", "finance", "governance", "label", "labeler"),
     r"^domains\.finance\.governance\.label: unknown key\(s\) \['labeler'\] "
     r"\(domains\.finance\.governance\.label\.labeler\)"),
])
def test_a_typo_in_any_section_fails_the_load_naming_the_key(tmp_path, path, message):
    raw = default_raw()
    block = raw
    for key in path[:-1]:
        block = block.setdefault(key, {})
    block[path[-1]] = 1
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, raw), environ={})


@pytest.mark.parametrize(("path", "value", "message"), [
    (("training", "schedule"), "step",
     r"^training\.schedule='step': use cosine, linear or constant$"),
    (("domains", "legal", "training", "eval_percent"), 90,
     r"^training\.eval_percent=90: use 1\.\.50 \(effective settings of domain 'legal'\)$"),
    (("domains", "medical", "privacy", "weekly_epsilon"), 0.5,
     r"^privacy\.weekly_epsilon=0\.5 exceeds its share of the budget .* \(effective settings of domain 'medical'\)$"),
    (("artifacts", "max_drop"), 1.5, r"^artifacts\.max_drop=1\.5: use a fraction in \[0, 1\)"),
    (("serving", "max_batch_size"), 0, r"^serving\.max_batch_size=0 must be a positive integer$"),
    (("security", "audit_retention_days"), 30, r"^security\.audit_retention_days=30: use at least 180 days$"),
    (("ops", "task_minutes"), 400, r"^ops\.task_minutes=400 must be below ops\.task_timeout_minutes=360"),
    (("ops", "gpu_temperature_c"), 200, r"^ops\.gpu_temperature_c=200: use a temperature in Celsius \(0-150\)$"),
    (("governance", "label", "share"), 1.5,
     r"^governance\.label\.share=1\.5 must be in \[0, 1\] .*\(effective settings of domain '\w+'\)$"),
    (("domains", "legal", "governance", "label", "low_confidence"), "high",
     r"^domains\.legal\.governance\.label\.low_confidence='high': expected a number "
     r"\(effective settings of domain 'legal'\)$"),
    (("serving", "domains"), ["insurance"], r"^unknown domain 'insurance'; configured: "),
    (("domains", "legal", "governance", "clean", "min_chars"), 0,
     r"^governance\.clean: need 1 <= min_chars \(0\) <= max_chars \(20000\) \(effective settings of domain 'legal'\)$"),
    (("governance", "pii", "kinds"), ["email", "ssn"],
     r"^governance\.pii\.kinds: unknown \['ssn'\]; use a subset of .* \(effective settings of domain '\w+'\)$"),
    (("domains", "medical", "governance", "sensitive", "policy"), "redact",
     r"^domains\.medical\.governance\.sensitive\.policy='redact': use one of \['drop', 'mask', 'flag'\]$"),
    (("governance", "sensitive", "default"), "hide", r"^governance\.sensitive\.default='hide': use one of \['drop', 'mask', 'flag'\]$"),
])
def test_a_bad_value_in_any_section_fails_the_load_naming_the_key(tmp_path, path, value, message):
    raw = default_raw()
    block = raw
    for key in path[:-1]:
        block = block.setdefault(key, {})
    block[path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, raw), environ={})


def test_for_domain_merges_the_overrides_into_one_frozen_object(tmp_path):
    import dataclasses

    raw = default_raw()
    raw["governance"]["label"] = {"share": 0.2}
    raw["domains"]["legal"]["training"]["max_drop"] = 0.02
    raw["domains"]["legal"]["governance"] = {"label": {"low_confidence": 0.8, "labeller": "shared"}}
    config = load_config(write(tmp_path, raw), environ={"PIPELINE__TRAINING__EPOCHS": "4"})
    legal = config.for_domain("legal")
    assert (legal.name, legal.task, legal.languages) == ("legal", "classification", ("en",))
    assert (legal.training.epochs, legal.training.weight_factor, legal.training.weight_terms_file,
            legal.training.grad_sample_mode) == (4, 1.5, "config/legal_terms.txt", "bk")
    assert (legal.privacy.epsilon, legal.privacy.delta, legal.privacy.weekly_epsilon, legal.privacy.secure_mode) == \
        (2.0, 1e-5, 0.4, False)
    assert (legal.label.share, legal.label.low_confidence, legal.label.labeller) == (0.2, 0.8, "shared")
    assert (legal.label.review.share, legal.label.review.low_confidence) == (0.2, 0.8)
    assert legal.governance["label"] == {"share": 0.2, "low_confidence": 0.8, "labeller": "shared"}
    assert legal.governance["pii"] == {"kinds": ["email", "phone", "id", "card", "address"]}
    assert (legal.clean.allowed_languages, legal.clean.min_chars, legal.pii.kinds, legal.sensitive.default) == \
        (("en",), 2, ("email", "phone", "id", "card", "address"), "flag")
    assert config.for_domain("customer_service").sensitive.default == "drop"
    assert legal.max_drop == 0.02
    medical = config.for_domain("medical")
    assert (medical.training.weight_terms_file, medical.max_drop) == ("", 0.05)
    assert (medical.privacy.epsilon, medical.privacy.weekly_epsilon, medical.privacy.monthly_epsilon) == (0.5, 0.1, 0.1)
    assert (medical.label.share, medical.label.low_confidence, medical.label.labeller) == (0.2, 0.6, "medical")
    assert config.for_domain("finance").training.forecast is True
    assert config.for_domain("customer_service").label.labeller is None  # causal_lm: no labeller of its own
    with pytest.raises(dataclasses.FrozenInstanceError):
        legal.max_drop = 0.5  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown domain 'insurance'; configured: code, customer_service, finance"):
        config.for_domain("insurance")


def test_a_replaced_section_reaches_for_domain():
    """``dataclasses.replace`` of a section recomputes the domains' effective settings (they were copied
    from the original config, so a benchmark's label device was silently ignored)."""
    config = load_config()
    assert config.for_domain("legal").label.device == "auto"
    governance = dataclasses.replace(config.governance, label={**config.governance.label, "device": "cpu",
                                                                "batch_size": 64})
    changed = dataclasses.replace(config, governance=governance)
    assert (changed.for_domain("legal").label.device, changed.for_domain("legal").label.batch_size) == ("cpu", 64)
    assert config.for_domain("legal").label.device == "auto"  # the original is unchanged
    with pytest.raises(ConfigError, match="governance.label.device"):
        dataclasses.replace(config, governance=dataclasses.replace(config.governance, label={"device": "tpu"}))


def test_require_privacy_is_the_domain_budget_or_says_how_to_set_one(tmp_path):
    config = load_config(environ={})
    assert config.for_domain("medical").require_privacy() is config.for_domain("medical").privacy
    assert config.for_domain("legal").max_drop == 0.05
    raw = default_raw()
    del raw["domains"]["product_reviews"]["privacy"]  # no seed budget either
    config = load_config(write(tmp_path, raw), environ={})
    assert config.for_domain("product_reviews").privacy is None
    with pytest.raises(ConfigError, match=r"^privacy.epsilon is required for domain 'product_reviews' \(no built-in "
                                          r"budget\): set domains.product_reviews.privacy.epsilon in config/pipeline.yaml$"):
        config.for_domain("product_reviews").require_privacy()


def test_thresholds_and_review_defaults_come_from_the_config(tmp_path):
    from pipelines.config import ReviewConfig, Thresholds

    config = load_config(environ={})
    assert config.thresholds == Thresholds(gpu_temperature_c=85.0, accuracy_drop=0.05, api_p95_ms=500.0)
    assert (ReviewConfig().share, ReviewConfig().low_confidence) == (0.15, 0.6)
    assert config.for_domain("legal").label.review == ReviewConfig()
    config = load_config(environ={"PIPELINE__OPS__GPU_TEMPERATURE_C": "80", "PIPELINE__OPS__ACCURACY_DROP": "2e-2",
                                  "PIPELINE__SERVING__P95_ALERT_MS": "250"})
    assert config.thresholds == Thresholds(gpu_temperature_c=80.0, accuracy_drop=0.02, api_p95_ms=250.0)


def test_environment_overrides_reach_the_typed_sections():
    config = load_config(environ={"PIPELINE__TRAINING__LEARNING_RATE": "1e-4", "PIPELINE__PRIVACY__WEEKLY_SHARE": "0.5",
                                  "PIPELINE__ARTIFACTS__MAX_DROP": "0.1", "PIPELINE__SERVING__DOMAINS": "legal,medical",
                                  "PIPELINE__SECURITY__ENCRYPT_PREFIXES": "curated/,models/",
                                  "PIPELINE__OPS__RUN_MINUTES": "90"})
    assert config.for_domain("finance").training.learning_rate == 1e-4
    assert (config.for_domain("finance").privacy.weekly_share, config.for_domain("finance").privacy.delta) == (0.5, 1e-5)
    assert (config.artifacts.max_drop, config.for_domain("finance").max_drop) == (0.1, 0.1)
    assert config.serving.domains == ("legal", "medical")
    assert config.security.encrypt_prefixes == ("curated/", "models/")
    assert config.ops.sla.run_minutes == 90
    with pytest.raises(ConfigError, match=r"^training: unknown key\(s\) \['lerning_rate'\]"):
        load_config(environ={"PIPELINE__TRAINING__LERNING_RATE": "1e-4"})


def test_every_shipped_yaml_config_loads():
    root = DEFAULT_CONFIG_PATH.parent.parent
    paths = sorted(p for folder in ("config", "tests") for p in (root / folder).rglob("*.y*ml"))
    assert DEFAULT_CONFIG_PATH in paths
    for path in paths:
        config = load_config(path, environ={})
        assert {name: config.for_domain(name).name for name in config.domains} == {n: n for n in config.domains}


def test_domain_stage_block_must_be_a_mapping(tmp_path):
    raw = default_raw()
    raw["domains"]["legal"]["training"] = "fast"
    with pytest.raises(ConfigError, match=r"domains.legal.training: expected a mapping"):
        load_config(write(tmp_path, raw), environ={})


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads 5e-4 as a string; from the file or the environment it must still be the number."""
    raw = default_raw()
    raw["training"] = {"learning_rate": "5e-4"}
    config = load_config(write(tmp_path, raw), environ={"PIPELINE__TRAINING__MONTHLY_LEARNING_RATE": "2e-3",
                                                        "PIPELINE__TRAINING__EPOCHS": "4"})
    training = config.for_domain("legal").training
    assert (training.learning_rate, training.monthly_learning_rate, training.epochs) == (5e-4, 2e-3, 4)
    raw["training"] = {"learning_rate": "fast"}
    with pytest.raises(ConfigError, match=r"^training\.learning_rate='fast': expected a number$"):
        load_config(write(tmp_path, raw), environ={})
