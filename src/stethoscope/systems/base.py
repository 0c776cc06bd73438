"""The `System` contract every trainable detector follows, its registry and persistence.

A system is fitted on normal clips of one machine type and returns one score per clip
(higher = more anomalous). Parameters are constructor arguments (sklearn-style) so that a
YAML config mirrors them. A model directory holds ``config.json`` (system name, parameters,
decision threshold, run metadata) and ``weights.safetensors``; nothing is pickled.
"""
from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import scipy.stats
import torch
from safetensors.torch import load_file, save_file

from ..data.clip import Clip
from ..errors import CheckpointError, ConfigError
from ..utils import atomic_directory, atomic_write_json, run_metadata

REGISTRY: dict[str, type["System"]] = {}
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"


def register(cls: type["System"]) -> type["System"]:
    """Class decorator: make a system available by its ``name`` to the CLI and `get_system`."""
    REGISTRY[cls.name] = cls
    return cls


def get_system(name: str, **params: Any) -> "System":
    """Build a registered system from its name and constructor parameters."""
    _load_builtin_systems()
    if name not in REGISTRY:
        raise ConfigError(f"unknown system {name!r}; known: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    known = cls.param_names()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"system {name!r} has no parameter(s) {unknown}; parameters: {known}")
    return cls(**params)


def list_systems() -> dict[str, type["System"]]:
    _load_builtin_systems()
    return dict(sorted(REGISTRY.items()))


def _load_builtin_systems() -> None:
    from .. import systems  # noqa: F401  (importing the package registers the built-ins)


def gamma_threshold(scores: np.ndarray, percentile: float = 0.9) -> float:
    """DCASE decision threshold: a gamma distribution fitted to normal scores, its 90th percentile."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2 or np.ptp(scores) == 0:
        return float(scores.max()) if len(scores) else float("inf")
    shape, loc, scale = scipy.stats.gamma.fit(scores)
    return float(scipy.stats.gamma.ppf(q=percentile, a=shape, loc=loc, scale=scale))


class System(ABC):
    """Base class: subclasses set ``name``, take their parameters as keyword arguments and
    implement `fit`, `score`, `state_tensors` and `load_state_tensors`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    threshold_: float | None = None

    @classmethod
    def param_names(cls) -> list[str]:
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind in kinds]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters as they are now (what a YAML config holds)."""
        return {p: getattr(self, p) for p in self.param_names()}

    @abstractmethod
    def fit(self, train: Sequence[Clip], val: Sequence[Clip] | None = None) -> "System":
        """Learn from normal ``train`` clips; ``val`` may hold labelled clips for model selection."""

    @abstractmethod
    def score(self, clips: Sequence[Clip]) -> np.ndarray:
        """Anomaly score per clip, higher = more anomalous."""

    def score_waveforms(self, waves: Sequence[np.ndarray], sample_rate: int = 16_000) -> np.ndarray:
        """Scores of in-memory mono waveforms (streams, microphones). This generic version
        writes temporary WAV files and calls `score`; systems with a direct path override it."""
        import tempfile

        import soundfile as sf

        with tempfile.TemporaryDirectory(prefix="stethoscope-") as tmp:
            clips = []
            for i, wave in enumerate(waves):
                path = Path(tmp) / f"chunk_{i:05d}.wav"
                sf.write(str(path), np.asarray(wave, dtype=np.float32), sample_rate, subtype="FLOAT")
                clips.append(Clip(path=path, machine="stream"))
            return self.score(clips)

    def anomaly_map(self, clip: Clip) -> np.ndarray:
        """Where in (mel bin, frame) the clip looks abnormal; only reconstruction systems have one."""
        raise NotImplementedError(f"system {self.name!r} has no anomaly map")

    def reconstruction(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        """(input log-mel, reconstructed log-mel) of a reconstruction system, for pictures."""
        raise NotImplementedError(f"system {self.name!r} reconstructs nothing")

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """1 = anomaly where the score exceeds the gamma-fit threshold learned in `fit`."""
        if self.threshold_ is None:
            raise RuntimeError("the system is not fitted: no decision threshold")
        return (np.asarray(scores) > self.threshold_).astype(int)

    def fit_threshold(self, train_scores: np.ndarray) -> None:
        self.threshold_ = gamma_threshold(train_scores)

    # -- persistence ------------------------------------------------------------------
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
            save_file(tensors, str(tmp / WEIGHTS_FILE))
            atomic_write_json(tmp / CONFIG_FILE, {
                "system": self.name,
                "params": self.get_params(),
                "threshold": self.threshold_,
                "extra_state": self.extra_state(),
                "run": metadata or run_metadata(self.get_params(), getattr(self, "seed", None)),
            })
        return directory


def load_system(directory: str | Path, **overrides: Any) -> System:
    """Rebuild a saved system; ``overrides`` replace saved parameters (e.g. ``device='cpu'``)."""
    directory = Path(directory)
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.exists() or not w_path.exists():
        raise CheckpointError(f"{directory}: not a model directory (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg_path}: corrupt JSON ({err})") from err
    system = get_system(cfg["system"], **{**cfg["params"], **overrides})
    system.threshold_ = cfg.get("threshold")
    system.load_extra_state(cfg.get("extra_state", {}))
    system.load_state_tensors(load_file(str(w_path)))
    return system
