"""The floor every config module stands on: ``ConfigError``, the project root, and building a frozen
dataclass from a raw YAML section (unknown keys and bad types fail naming the key).

Standard library and ``yaml`` only: DAG files import the config at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "pipeline.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and what to do."""


class EnvValue(str):
    """A value from the environment: typed by the field it sets (text stays text: bucket '123')."""


def _kind(cls: type, key: str) -> str:
    return str(cls.__dataclass_fields__[key].type)


def coerce(cls: type, values: Mapping[str, Any], *, section: str = "") -> dict[str, Any]:
    """Type the values of known fields: environment text by the field, YAML lists as tuples, ``5e-4`` as a number."""
    where = f"{section}." if section else ""
    out = {}
    for key, value in values.items():
        if key not in cls.__dataclass_fields__:
            out[key] = value
            continue
        kind = _kind(cls, key)
        if isinstance(value, EnvValue):
            if kind in ("str", "Path"):
                value = str(value) if kind == "str" else Path(value)
            else:
                try:
                    value = yaml.safe_load(value) if value else ""
                except yaml.YAMLError:
                    raise ConfigError(f"{where}{key}={value!r} from the environment is not a valid value") from None
                if kind.startswith("tuple") and isinstance(value, str):
                    value = [v for v in value.split(",") if v]
        if kind.startswith("tuple") and isinstance(value, list):
            value = tuple(value)
        if isinstance(value, str) and value.strip():
            # YAML 1.1 reads "5e-4" (no dot) as a string: a number field takes it as the number it means.
            if kind.split("|")[0].strip() in ("float", "int"):
                try:
                    number = float(value)
                except ValueError:
                    raise ConfigError(f"{where}{key}={value!r}: expected a number") from None
                value = int(number) if kind.startswith("int") and number.is_integer() else number
        out[key] = value
    return out


def check_keys(cls: type, section: str, values: Mapping[str, Any], *, exclude: tuple[str, ...] = ()) -> None:
    """Raise ConfigError naming every key of ``values`` that ``cls`` does not have (e.g. ``training.lerning_rate``)."""
    known = set(cls.__dataclass_fields__) - set(exclude)
    unknown = sorted(set(values) - known)
    if unknown:
        named = ", ".join(f"{section}.{k}" for k in unknown)
        raise ConfigError(f"{section}: unknown key(s) {unknown} ({named}); known: {sorted(known)}")


def section(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``raw[name]`` as a fresh dict ({} when absent); anything else than a mapping is an error."""
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def build_stage_config(cls: type, section: str, values: Mapping[str, Any], **extra: Any) -> Any:
    """Build a frozen config dataclass from a raw section (unknown keys and bad types -> ConfigError).

    Values that came from the environment (``PIPELINE__TRAINING__SEED=7``) are typed by the field they set.
    """
    check_keys(cls, section, values, exclude=tuple(extra))
    try:
        return cls(**{**coerce(cls, values, section=section), **extra})
    except TypeError as exc:
        raise ConfigError(f"{section}: {exc}") from None
