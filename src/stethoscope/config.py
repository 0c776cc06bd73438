"""System configs: packaged YAML defaults, a user's YAML file, and ``key=value`` overrides."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import ConfigError


def packaged_config(system: str, variant: str | None = None) -> dict[str, Any]:
    """Defaults shipped in ``stethoscope/configs/<system>[_<variant>].yaml`` ({} if none)."""
    name = f"{system}_{variant}.yaml" if variant else f"{system}.yaml"
    path = resources.files("stethoscope") / "configs" / name
    if not path.is_file():
        if variant:
            raise ConfigError(f"no packaged config {name!r}")
        return {}
    return _mapping(yaml.safe_load(path.read_text()), name)


def _mapping(obj: Any, where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: a config must be a mapping of parameter: value")
    return obj


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["epochs=10", "score_mode=mahala"]`` -> {"epochs": 10, "score_mode": "mahala"} (YAML-typed)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def load_config(system: str, config_file: str | Path | None = None, overrides: Sequence[str] = (),
                variant: str | None = None) -> dict[str, Any]:
    """Packaged defaults, then the user's YAML file, then overrides (later wins)."""
    cfg = packaged_config(system, variant)
    if config_file is not None:
        path = Path(config_file)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            cfg.update(_mapping(yaml.safe_load(path.read_text()), str(path)))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({err})") from err
    cfg.update(parse_overrides(overrides))
    return cfg
