"""The privacy budget of a domain. ``PrivacyConfig`` and the seed budgets live in ``pipelines.config.privacy``
(validated when the file loads); a domain's effective one is ``config.for_domain(d).privacy``
(``config.for_domain(d).require_privacy()`` where a step must have one).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from pipelines.config import ConfigError
from pipelines.config.privacy import ACCOUNTANTS, KINDS, SEED_DEFAULTS, PrivacyConfig

__all__ = ["ACCOUNTANTS", "KINDS", "SEED_DEFAULTS", "DPTrainingSettings", "PrivacyConfig", "check_secure_mode",
           "dp_training_settings"]


def check_secure_mode(config: PrivacyConfig) -> None:
    """Fail before training if ``secure_mode`` is on but Opacus cannot make secure noise here.

    Opacus 1.6's ``PrivacyEngine(secure_mode=True)`` imports ``torchcsprng``, whose last release (0.2.1,
    2021) has no wheel for this Python/torch, so the failure would otherwise come mid-setup.

    Raises:
        ConfigError: secure mode requested and ``torchcsprng`` is not importable.
    """
    if config.secure_mode and importlib.util.find_spec("torchcsprng") is None:
        raise ConfigError("privacy.secure_mode is true but torchcsprng (required by Opacus for secure noise) is not "
                          "installed: install it on the training host, or set privacy.secure_mode: false "
                          "(development only)")


@dataclass(frozen=True)
class DPTrainingSettings:
    """What DP training must use, from the one source of truth (the domain's privacy config).

    The trainer takes these instead of its own keys, and the manifest's ``dp`` block records them.
    """

    secure_mode: bool
    poisson_sampling: bool
    max_grad_norm: float
    accountant: str


def dp_training_settings(config: PrivacyConfig) -> DPTrainingSettings:
    """The DP settings a training run must use, checked on this host.

    Raises:
        ConfigError: ``secure_mode`` is on but Opacus cannot make secure noise here (``check_secure_mode``).
    """
    check_secure_mode(config)
    return DPTrainingSettings(secure_mode=config.secure_mode, poisson_sampling=config.poisson_sampling,
                              max_grad_norm=float(config.max_grad_norm), accountant=config.accountant)
