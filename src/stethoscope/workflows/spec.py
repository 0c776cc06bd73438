"""Which system a workflow trains: a registered name with its hyperparameters (`SystemSpec`),
from packaged configs, a user's YAML file and ``KEY=VALUE`` overrides."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import load_config, packaged_config_path
from ..errors import ConfigError
from ..systems.base import System, get_system

# what `train`, `bench` and `demo` use without --system: the measured robust choice on few real
# clips (docs/mel_stats.md, docs/RESULTS.md section 14), fitted in seconds
DEFAULT_SYSTEM = "mel_stats"


@dataclass(frozen=True)
class SystemSpec:
    """A system to build: registered ``name``, its hyperparameters, and its ``label`` in outputs."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def build(self) -> System:
        """A new, unfitted system with these hyperparameters."""
        return get_system(self.name, **self.params)

    @property
    def folder(self) -> str:
        """The label as a folder name."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label or self.name)


def system_spec(
    name: str, config: str | None = None, overrides: Sequence[str] = (), variant: str | None = None
) -> SystemSpec:
    """The packaged config of ``name`` (or its ``variant``), the user's ``config`` file, then
    ``overrides`` (``KEY=VALUE``); the hyperparameters are checked here, before any audio is
    read."""
    spec = SystemSpec(name, load_config(name, config, overrides or (), variant), name)
    spec.build()
    return spec


def demo_variant(name: str, config: str | None) -> str | None:
    """``"demo"`` where the system has a packaged demo size (e.g. ``dcase_ae_demo.yaml``: fewer
    epochs) and the user gave no config of their own, else None."""
    return "demo" if not config and packaged_config_path(f"{name}_demo").is_file() else None


def system_specs(
    text: str, config: str | None = None, overrides: Sequence[str] = ()
) -> list[SystemSpec]:
    """``a,b@variant,c@file.yaml`` -> specs: each a system with its packaged config, or the packaged
    variant ``<name>_<variant>.yaml``, or a YAML file. ``config`` and ``overrides`` (``--config``,
    ``--set``) apply to a single system only: several systems get theirs from ``@``."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if not entries:
        raise ConfigError("--system: name at least one system")
    if len(entries) > 1 and (config or overrides):
        raise ConfigError(
            "--config and --set apply to one system; with several, give each its "
            "settings as name@variant (a packaged config such as tldiffgan@cpu) or "
            "name@file.yaml"
        )
    if len(set(entries)) != len(entries):
        raise ConfigError(f"--system names a system twice: {text!r}")
    specs = []
    for entry in entries:
        name, _, variant = entry.partition("@")
        if variant.endswith((".yaml", ".yml")):
            params = load_config(name, variant, overrides)
        else:
            params = load_config(name, config, overrides, variant or None)
        get_system(name, **params)  # hyperparameters are checked before any audio is read
        specs.append(SystemSpec(name, params, entry))
    return specs
