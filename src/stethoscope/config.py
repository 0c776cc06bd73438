"""System configs: packaged YAML defaults, a user's YAML file, and ``key=value`` overrides."""
from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def packaged_config_path(name: str) -> Path:
    """Path of a config shipped in ``stethoscope/configs/`` (``name`` with or without .yaml)."""
    return Path(str(resources.files("stethoscope") / "configs" / (name if name.endswith(".yaml") else f"{name}.yaml")))


def read_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config, with ``base: NAME`` resolved: the named config (a file beside this one,
    or a packaged config) is read first and this file's keys override it. Variants such as
    ablations thus hold only what they change."""
    path = Path(path)
    if not path.is_file():
        packaged = packaged_config_path(str(path))
        if path.parent == Path(".") and packaged.is_file():
            path = packaged
        else:
            raise ConfigError(f"{path}: config file not found")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'base' chain loops back to itself")
    try:
        cfg = _mapping(yaml.safe_load(path.read_text()), str(path))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from err
    base = cfg.pop("base", None)
    if base is None:
        return cfg
    name = base if str(base).endswith(".yaml") else f"{base}.yaml"
    base_path = path.parent / name if (path.parent / name).is_file() else packaged_config_path(name)
    return {**read_config(base_path, (*_seen, path.resolve())), **cfg}


def packaged_config(system: str, variant: str | None = None) -> dict[str, Any]:
    """Defaults shipped in ``stethoscope/configs/<system>[_<variant>].yaml`` ({} if none)."""
    path = packaged_config_path(f"{system}_{variant}" if variant else system)
    if not path.is_file():
        if variant:
            raise ConfigError(f"no packaged config {path.name!r}")
        return {}
    return read_config(path)


def _mapping(obj: Any, where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: a config must be a mapping of parameter: value")
    return obj


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["epochs=10", "score_mode=mahala"]`` -> {"epochs": 10, "score_mode": "mahala"}
    (YAML-typed)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def load_config(system: str, config_file: str | Path | None = None, overrides: Sequence[str] = (),
                variant: str | None = None) -> dict[str, Any]:
    """Packaged defaults, then the user's YAML file (or packaged config name), then overrides (later
    wins)."""
    cfg = packaged_config(system, variant)
    if config_file is not None:  # a path, or the name of a packaged config such as tldiffgan_no_wave
        cfg.update(read_config(config_file))
    cfg.update(parse_overrides(overrides))
    return cfg
