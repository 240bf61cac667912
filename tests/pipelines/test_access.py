"""pipelines.access: the model approvers list and the check in the promotion path."""

from __future__ import annotations

import pytest

from pipelines.access import ModelApprovers, check_approver, load_model_approvers
from pipelines.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def _config(**environ: str):
    return load_config(DEFAULT_CONFIG_PATH, environ=environ)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({}, ()),
        ({"model_approvers": []}, ()),
        ({"model_approvers": ["alice", "bob", "alice"]}, ("alice", "bob")),
        ({"model_approvers": ("airflow:*:domain_finetune",)}, ("airflow:*:domain_finetune",)),
        # the rest of the security section belongs to pipelines.security and is ignored here
        ({"enabled": True, "audit_prefix": "audit", "model_approvers": ["carol"]}, ("carol",)),
    ],
)
def test_load_from_the_security_section(raw, expected):
    assert load_model_approvers(raw).model_approvers == expected


def test_load_from_pipeline_config_and_environment():
    cfg = _config(PIPELINE__SECURITY__MODEL_APPROVERS="alice,bob")
    assert load_model_approvers(cfg) == ModelApprovers(model_approvers=("alice", "bob"))
    assert check_approver(cfg, who="bob", action="rollback", domain="legal") == "bob"
    with pytest.raises(PermissionError, match=r"^'mallory' may not promote a legal model: not in "
                                              r"security\.model_approvers \['alice', 'bob'\]"):
        check_approver(cfg, who="mallory", domain="legal")


@pytest.mark.parametrize(
    "value, message",
    [
        ("alice", "security.model_approvers='alice': use a list of user names"),
        (["alice", "bob smith"], "'bob smith' must be a user name or pattern"),
        (["alice", ""], "'' must be a user name or pattern"),
        (["a,b"], "'a,b' must be a user name or pattern"),
        ([3], "3 must be a user name or pattern"),
        ({"alice": True}, "use a list of user names"),
    ],
)
def test_invalid_lists_name_the_key(value, message):
    with pytest.raises(ConfigError) as err:
        load_model_approvers({"model_approvers": value})
    assert message in str(err.value)


@pytest.mark.parametrize(
    "who, allowed",
    [
        ("alice", True),
        ("Alice", False),  # user names are case-sensitive
        ("alice2", False),
        ("airflow:dan:domain_finetune", True),
        ("airflow:scheduler:domain_finetune", True),
        ("airflow:dan:weekly_ingest", False),
        ("", False),
    ],
)
def test_exact_names_and_patterns(who, allowed):
    approvers = ModelApprovers(model_approvers=("alice", "airflow:*:domain_finetune"))
    assert approvers.allows(who) is allowed


def test_check_returns_who_when_allowed():
    approvers = ModelApprovers(model_approvers=("alice",))
    assert check_approver(approvers, who="alice") == "alice"
    assert check_approver(approvers, who="alice", action="rollback", domain="medical") == "alice"


def test_refusal_messages_say_what_to_do():
    approvers = ModelApprovers(model_approvers=("alice",))
    with pytest.raises(PermissionError) as err:
        check_approver(approvers, who="bob", action="rollback", domain="medical")
    assert str(err.value) == (
        "'bob' may not rollback a medical model: not in security.model_approvers ['alice']. "
        "Ask a model approver to do it, or have your name added to security.model_approvers in config/pipeline.yaml"
    )
    with pytest.raises(PermissionError) as err:
        check_approver(approvers, who="")
    assert str(err.value) == "cannot promote a model: no user name (pass --who NAME or set $USER)"


def test_empty_list_fails_closed():
    with pytest.raises(PermissionError) as err:
        check_approver(ModelApprovers(), who="alice", domain="legal")
    assert str(err.value) == (
        "'alice' may not promote a legal model: security.model_approvers is empty, so nobody may. "
        "List the model approvers in config/pipeline.yaml (security.model_approvers: [alice, ...])"
    )


def test_unknown_action_is_a_programming_error():
    with pytest.raises(ValueError, match="action='delete'"):
        check_approver(ModelApprovers(model_approvers=("alice",)), who="alice", action="delete")


def test_config_is_frozen():
    approvers = ModelApprovers(model_approvers=["alice"])
    assert approvers.model_approvers == ("alice",)
    with pytest.raises(AttributeError):
        approvers.model_approvers = ("mallory",)  # type: ignore[misc]
