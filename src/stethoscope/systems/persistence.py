"""Pickle-free persistence of a `System`: its model folder and `load_system`.

A model directory holds ``config.json`` (system name, hyperparameters, threshold, score
normalisation, learned JSON state, run record) and ``weights.safetensors`` (everything learned,
as named tensors); both are written atomically, and nothing is pickled.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from safetensors.torch import load_file, save

from ..errors import CheckpointError
from ..fsutil import atomic_directory, atomic_write_bytes, atomic_write_json
from ..utils import run_metadata
from .registry import system_from_saved

if TYPE_CHECKING:
    from .base import System

CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"


class Persistent(ABC):
    """What a `System` saves and how (a mixin of `System`): its learned tensors
    (`state_tensors`), its learned JSON state (`extra_state`) and the model folder (`save`)."""

    name: ClassVar[str]
    threshold_: float | None = None
    score_norm_: dict[str, Any] | None = None
    run_: dict[str, Any] | None = None

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as they are now (`System.get_params`)."""

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything learned, as named tensors (saved as safetensors)."""

    @abstractmethod
    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state_tensors` returned."""

    def extra_state(self) -> dict[str, Any]:
        """JSON-serialisable learned state that is not a tensor (e.g. a chosen detector)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        del state

    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write the model directory atomically: readers see the old one or the new one."""
        directory = Path(directory)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_tensors().items()}
        with atomic_directory(directory) as tmp:
            atomic_write_bytes(tmp / WEIGHTS_FILE, save(tensors))
            atomic_write_json(tmp / CONFIG_FILE, self._config(metadata))
        return directory

    def save_config(self, directory: str | Path) -> Path:
        """Rewrite only ``config.json`` (threshold, run record) of this system's saved folder,
        atomically: the weights are unchanged, and files beside the model stay (a single-type
        `train` keeps its ``run.json`` in the model folder)."""
        path = Path(directory) / CONFIG_FILE
        if not path.exists():
            raise CheckpointError(f"{directory}: not a model directory (no {CONFIG_FILE})")
        atomic_write_json(path, self._config())
        return Path(directory)

    def _config(self, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        seed = (self.run_ or {}).get("runtime", {}).get("seed")
        run = {**run_metadata(self.get_params(), seed), **(self.run_ or {}), **(metadata or {})}
        return {
            "system": self.name,
            "params": self.get_params(),
            "threshold": self.threshold_,
            "score_norm": self.score_norm_,
            "extra_state": self.extra_state(),
            "run": run,
        }


def load_system(directory: str | Path) -> System:
    """Rebuild a saved system from its folder; clear errors for missing or corrupt files."""
    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.exists() or not w_path.exists():
        raise CheckpointError(
            f"{directory}: not a model directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
        name, params = cfg["system"], dict(cfg["params"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"{cfg_path}: corrupt model config ({type(err).__name__}: {err})"
        ) from err
    system = system_from_saved(name, params)
    system.threshold_, system.score_norm_ = cfg.get("threshold"), cfg.get("score_norm")
    system.run_ = cfg.get("run")
    system.load_extra_state(cfg.get("extra_state", {}))
    try:
        tensors = load_file(str(w_path))
    except Exception as err:  # safetensors raises its own error type for truncated or foreign files
        raise CheckpointError(f"{w_path}: corrupt weights file ({err})") from err
    system.load_state_tensors(tensors)
    return system
