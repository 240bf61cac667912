"""load_config: the default file, environment overrides, and errors that name the key."""

from __future__ import annotations

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
    assert sorted(config.domains) == ["customer_service", "finance", "legal", "medical", "product_reviews"]
    assert config.domain("customer_service") == DomainConfig(name="customer_service", task="causal_lm",
                                                             languages=("zh", "en"),
                                                             privacy={"epsilon": 8.0, "delta": 1e-5})
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
    assert len(config.domains) == 6
    assert config.domain("insurance") == DomainConfig(name="insurance", task="causal_lm", languages=("zh", "en"))


def test_unknown_domain_lists_the_configured_ones():
    with pytest.raises(ConfigError, match="unknown domain 'insurance'; configured: customer_service, finance, legal, "
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


def test_stage_sections_are_kept_raw_and_built_by_their_stage(tmp_path):
    from dataclasses import dataclass

    from pipelines.config import build_stage_config

    raw = default_raw()
    raw["training"] = {"seed": 3}
    raw["domains"]["legal"]["privacy"] = {"epsilon": 2.0}
    config = load_config(write(tmp_path, raw), environ={"PIPELINE__TRAINING__EPOCHS": "4"})
    assert config.sections.training["seed"] == 3
    assert config.domain("legal").privacy == {"epsilon": 2.0}

    @dataclass(frozen=True)
    class Training:
        seed: int = 0
        epochs: int = 1

    assert build_stage_config(Training, "training", config.sections.training) == Training(seed=3, epochs=4)
    with pytest.raises(ConfigError, match=r"training: unknown key\(s\) \['colour'\]"):
        build_stage_config(Training, "training", {"colour": "red"})


def test_domain_stage_block_must_be_a_mapping(tmp_path):
    raw = default_raw()
    raw["domains"]["legal"]["training"] = "fast"
    with pytest.raises(ConfigError, match=r"domains.legal.training: expected a mapping"):
        load_config(write(tmp_path, raw), environ={})


def test_numbers_written_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads 5e-4 as a string; from the file or the environment it must still be the number."""
    from pipelines.train.config import training_config

    raw = default_raw()
    raw["training"] = {"learning_rate": "5e-4"}
    config = load_config(write(tmp_path, raw), environ={"PIPELINE__TRAINING__MONTHLY_LEARNING_RATE": "2e-3",
                                                        "PIPELINE__TRAINING__EPOCHS": "4"})
    training = training_config(config, "legal")
    assert (training.learning_rate, training.monthly_learning_rate, training.epochs) == (5e-4, 2e-3, 4)
    raw["training"] = {"learning_rate": "fast"}
    with pytest.raises(ConfigError, match=r"learning_rate='fast': expected a number"):
        training_config(load_config(write(tmp_path, raw), environ={}), "legal")
