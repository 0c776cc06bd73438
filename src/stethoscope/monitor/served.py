"""The models a monitor serves: the machine folders of a ``train --out`` folder, checked
machine names and source labels, each model's content version, and its warm-up."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.audio import SAMPLE_RATE
from ..engine import RunContext
from ..errors import CheckpointError, ConfigError, StethoscopeError
from ..systems.base import CONFIG_FILE, WEIGHTS_FILE, System
from ..systems.folders import model_folders

MACHINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SOURCE_MAX = 200


class UnknownMachine(StethoscopeError):
    """A request named a machine that has no model in the served folder."""


def check_machine_name(name: str) -> str:
    """``name`` when it can be a machine name (letters, digits, ``_ . -``; no ``..``, no
    slash, at most 64 characters), else `ConfigError`: no request names a path."""
    if not MACHINE_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"invalid machine name {name[:80]!r}: use letters, digits, '_', '.' or '-' "
            f"(at most 64, no '..')"
        )
    return name


def check_source(source: str) -> str:
    """A free-text source label (microphone, file name): printable, at most 200 characters."""
    if len(source) > SOURCE_MAX or not source.isprintable():
        raise ConfigError(f"source must be at most {SOURCE_MAX} printable characters")
    return source


def model_version(folder: Path) -> str:
    """A content hash of a model folder (config and weights): a retrained or recalibrated
    model is a new version."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(folder / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def find_models(folder: str | Path) -> dict[str, Path]:
    """{machine: model folder} of a folder written by ``train --out`` (`systems.folders`), each
    machine name checked: requests name machines, never paths."""
    found = model_folders(folder)
    if (Path(folder) / CONFIG_FILE).is_file():  # one model, named by its run record
        return {check_machine_name(name): path for name, path in found.items()}
    checked = {}
    for name, sub in found.items():
        try:
            checked[check_machine_name(name)] = sub
        except ConfigError as err:
            raise CheckpointError(f"{sub}: {err}") from err
    return checked


@dataclass
class ServedModel:
    """One machine's model as served: the system, its content version and its store id."""

    machine: str
    system: System
    version: str
    model_id: int

    @property
    def threshold(self) -> float:
        return float(self.system.threshold_)  # type: ignore[arg-type]


def warm_up(system: System, ctx: RunContext) -> None:
    """Score a little noise once, so that lazy set-up (device moves, eval mode) happens before
    requests score concurrently."""
    seconds = max(2.0, system.feature_request().min_seconds + 1.0)
    noise = np.random.default_rng(0).normal(0, 0.01, int(seconds * SAMPLE_RATE)).astype(np.float32)
    system.score_waveforms([noise], SAMPLE_RATE, ctx)
