"""Who may move a domain's production pointer: the ``security.model_approvers`` list.

Airflow's roles (docs/SECURITY.md) decide who may trigger pipelines; promotion and rollback also run
outside Airflow (``python -m pipelines model promote|rollback``), so the promotion path checks the
actor against this list itself. The list fails closed: when it is empty nobody is an approver.

An entry is a user name as recorded in promotion records (``--who`` or ``$USER`` on the CLI,
``airflow:<user>:<dag_id>`` from a DAG) or a shell-style pattern of one (``airflow:*:domain_finetune``).
This is a guard against mistakes, not authentication: the caller asserts its own name. Writes to
``models/<domain>/promotions/`` are only as protected as the object-store credentials that allow them.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.config import ConfigError, PipelineConfig, build_stage_config

# No whitespace or commas: the environment override (PIPELINE__SECURITY__MODEL_APPROVERS=a,b) splits on ','.
_ENTRY_RE = re.compile(r"^[^\s,]{1,128}$")
ACTIONS = ("promote", "rollback")


@dataclass(frozen=True)
class ModelApprovers:
    """The people (or pipelines) allowed to promote and roll back models.

    Attributes:
        model_approvers: user names or shell-style patterns (``*``, ``?``, ``[..]``) of them; empty means
            nobody may promote or roll back through a checked path.
    """

    model_approvers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        value = self.model_approvers
        if isinstance(value, str) or not isinstance(value, (tuple, list)):
            raise ConfigError(f"security.model_approvers={value!r}: use a list of user names, e.g. [alice, bob]")
        for entry in value:
            if not isinstance(entry, str) or not _ENTRY_RE.match(entry):
                raise ConfigError(f"security.model_approvers: {entry!r} must be a user name or pattern "
                                  "(1-128 characters, no spaces or commas)")
        object.__setattr__(self, "model_approvers", tuple(dict.fromkeys(value)))

    def allows(self, who: str) -> bool:
        """Whether ``who`` matches an entry (exactly, or as a shell-style pattern; case-sensitive)."""
        if not who:
            return False
        return any(who == entry or fnmatch.fnmatchcase(who, entry) for entry in self.model_approvers)


def load_model_approvers(config: PipelineConfig | Mapping[str, Any]) -> ModelApprovers:
    """Read ``security.model_approvers`` (only that key) from the configuration.

    Args:
        config: the pipeline configuration, or the raw ``security`` mapping.

    Returns:
        The validated approvers.

    Raises:
        ConfigError: the value is not a list of user names.
    """
    if not isinstance(config, Mapping):
        config = {"model_approvers": config.security.model_approvers}
    values = {"model_approvers": config["model_approvers"]} if "model_approvers" in config else {}
    return build_stage_config(ModelApprovers, "security", values)


def check_approver(config: PipelineConfig | ModelApprovers, *, who: str, action: str = "promote",
                   domain: str | None = None) -> str:
    """Refuse a promotion or rollback by someone who is not a model approver.

    Args:
        config: the pipeline configuration (``security.model_approvers`` is read) or loaded approvers.
        who: the acting user, as it will be recorded in the promotion record.
        action: ``promote`` or ``rollback`` (for the message).
        domain: the model's domain (for the message).

    Returns:
        ``who``, unchanged, when allowed.

    Raises:
        PermissionError: ``who`` is empty or not in ``security.model_approvers``; the message says how to fix it.
        ConfigError: ``security.model_approvers`` is invalid.
        ValueError: ``action`` is not ``promote`` or ``rollback``.
    """
    if action not in ACTIONS:
        raise ValueError(f"action={action!r}: use one of {ACTIONS}")
    approvers = config if isinstance(config, ModelApprovers) else load_model_approvers(config)
    what = f"{action} a {domain} model" if domain else f"{action} a model"
    if not who:
        raise PermissionError(f"cannot {what}: no user name (pass --who NAME or set $USER)")
    if approvers.allows(who):
        return who
    if not approvers.model_approvers:
        raise PermissionError(
            f"{who!r} may not {what}: security.model_approvers is empty, so nobody may. "
            "List the model approvers in config/pipeline.yaml (security.model_approvers: [alice, ...])"
        )
    raise PermissionError(
        f"{who!r} may not {what}: not in security.model_approvers {list(approvers.model_approvers)}. "
        "Ask a model approver to do it, or have your name added to security.model_approvers "
        "in config/pipeline.yaml"
    )
