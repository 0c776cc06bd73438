"""Small shared helpers: numbers from the environment, run metadata (the atomic writers are
`fsutil`'s)."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

import torch

from .errors import ConfigError


def env_number(
    name: str, default: float, minimum: float = 0.0, strict: bool = False, unit: str = ""
) -> float:
    """A number from the environment variable ``name`` (``default`` when unset or empty); a
    clear error naming the variable when it is not a number at least (above) ``minimum``."""
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = float("nan")
    if not (value > minimum if strict else value >= minimum):
        raise ConfigError(
            f"${name} must be a number {'>' if strict else '>='} {minimum:g}{unit}, got {raw!r}"
        )
    return value


def run_metadata(config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """What a run needs to be reproduced: config, seed, versions, machine, command, time."""
    versions: dict[str, str | None] = {}
    for pkg in (
        "stethoscope",
        "torch",
        "numpy",
        "scipy",
        "scikit-learn",
        "pyod",
        "soundfile",
        "soxr",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "config": config or {},
        "seed": seed,
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "command": sys.argv,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
