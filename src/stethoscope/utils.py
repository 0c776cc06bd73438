"""Small shared helpers: seeding, device choice, run metadata; the atomic writers of `fsutil`."""
from __future__ import annotations

import os
import platform
import random
import sys
import time
from importlib import metadata
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .fsutil import (  # noqa: F401  (re-exported: the writers lived here first)
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    recover_directory,
)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a clear error if CUDA was asked for but is absent."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ConfigError(f"unknown device {device!r}: use cpu or cuda")
    return torch.device(device)


def run_metadata(config: dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """What a run needs to be reproduced: config, seed, versions, machine, command, time."""
    versions = {}
    for pkg in ("stethoscope", "torch", "numpy", "scipy", "scikit-learn", "pyod", "soundfile", "soxr"):
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
