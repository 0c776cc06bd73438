"""System configs: packaged YAML defaults, a user's YAML file, and ``key=value`` overrides.

Later sources override earlier ones key by key, and nested mappings merge the same way
(`merge`): a composite's part (tldiffgan's ``ldgan: {...}``) or an ensemble's
``member_params`` keep the keys a later source does not name. A dotted override key reaches
into them: ``ldgan.epochs=3``, ``member_params.dcase_ae.epochs=5``."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def packaged_config_path(name: str) -> Path:
    """Path of a config shipped in ``stethoscope/configs/`` (``name`` with or without .yaml)."""
    return Path(
        str(
            resources.files("stethoscope")
            / "configs"
            / (name if name.endswith(".yaml") else f"{name}.yaml")
        )
    )


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
    return merge(read_config(base_path, (*_seen, path.resolve())), cfg)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; where both hold a mapping under one key, merged the same way."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


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
    """``["epochs=10", "ldgan.tmixup=false"]`` -> {"epochs": 10, "ldgan": {"tmixup": False}}
    (YAML-typed values; a dotted key names a nested mapping's key)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        path = [part.strip() for part in key.split(".")]
        if not sep or not all(path):
            raise ConfigError(f"override {item!r} is not key=value (or part.key=value)")
        nested: Any = yaml.safe_load(value) if value.strip() else None
        for part in reversed(path[1:]):
            nested = {part: nested}
        out = merge(out, {path[0]: nested})
    return out


def load_config(
    system: str,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    variant: str | None = None,
) -> dict[str, Any]:
    """Packaged defaults, then the user's YAML file (or packaged config name), then overrides (later
    wins)."""
    cfg = packaged_config(system, variant)
    if (
        config_file is not None
    ):  # a path, or the name of a packaged config such as tldiffgan_no_wave
        cfg = merge(cfg, read_config(config_file))
    return merge(cfg, parse_overrides(overrides))
