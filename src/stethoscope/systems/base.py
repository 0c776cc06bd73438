"""The `System` contract every trainable detector follows, its registry and persistence.

A system is fitted on normal clips of one machine type and returns one score per clip
(higher = more anomalous). Hyperparameters are constructor arguments (sklearn-style),
checked on construction, so that a YAML config mirrors them; runtime settings (device,
seed, threads, cache, checkpoints, progress) arrive separately as a `RunContext`.

Every scoring path decodes each clip once: `score`, `score_waveforms` and `explain` build
`Decoded` chunks holding what the system's `feature_request` asks for, and the system's
`score_decoded` / `explain_decoded` feed every branch from them. A model directory holds
``config.json`` (system name, hyperparameters, threshold, learned JSON state, run record)
and ``weights.safetensors``; nothing is pickled.

The decision threshold is fitted once here for every system (`System.fit_threshold`): to
cross-fitted held-out training scores by default, or in-sample as the DCASE baselines do
(see `threshold`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save

from ..data.clip import Clip
from ..engine.checkpoint import fingerprint
from ..engine.context import RunContext
from ..errors import AudioSkipped, CheckpointError, ConfigError
from ..features.extract import Decoded, FeatureRequest, decode_waves, iter_decoded
from ..features.logmel import LogMelParams
from ..fsutil import atomic_directory, atomic_write_bytes, atomic_write_json
from ..progress import progress
from ..utils import run_metadata
from .export_plan import Exportable
from .params import check_params
from .registry import (
    REGISTRY,
    get_system,
    list_systems,
    nest_flat_parts,
    register,
    system_from_saved,
)
from .threshold import (
    CROSSFIT,
    IN_SAMPLE,
    THRESHOLD_PARAMS,
    apply_score_norm,
    crossfit_folds,
    fit_score_norm,
    gamma_threshold,
    score_summary,
    signature_with_threshold_params,
    taking_threshold_params,
)

__all__ = [
    "CONFIG_FILE",
    "REGISTRY",
    "WEIGHTS_FILE",
    "Explanation",
    "System",
    "get_system",
    "list_systems",
    "load_system",
    "register",
]

CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"


@dataclass
class Explanation:
    """One clip seen through a system in one pass: its score, input log-mel (dB), and where
    the system has them, the reconstruction (dB) and the anomaly map, all (n_mels, frames)."""

    score: float
    logmel: np.ndarray
    reconstruction: np.ndarray | None = None
    anomaly_map: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    map_title: str = "squared difference, input vs reconstruction"  # what the map's values are
    map_unit: str = "squared error (dB²)"


class System(Exportable, ABC):
    """Base class: subclasses set ``name``, take their hyperparameters as keyword arguments
    (passed to `_set_params`), say what they read (`feature_request`) and implement `fit`
    (ending with `fit_threshold`), `score_decoded`, `state_tensors` and `load_state_tensors`.
    The threshold hyperparameters (`threshold.THRESHOLD_PARAMS`) are every system's. A system
    with a scoring network exposes it (`scoring_module`, run by its own scoring and by the ONNX
    export, `export_plan`); one without says why (`export_refusal`, see `export_plan`).

    A *joint* system (``joint = True``) learns from several machine types at once: it
    overrides `fit_joint`, which `workflows.train.train_machines` and the K-fold bench then
    call once over every machine type instead of one `fit` per type."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # True: learns from several machine types at once (`fit_joint`); callers read it on the built
    # system, which may set its own where its hyperparameters decide (an ensemble with a joint
    # member)
    joint: bool = False
    param_rules: ClassVar[dict[str, Any]] = {}  # key -> interval "[1, inf)" or tuple of choices
    # a composite's parts: key -> part class; the key nests the part's parameters (`part_params`)
    parts: ClassVar[dict[str, type[System]]] = {}
    # the smallest hyperparameters that still run end to end (over the constructor's defaults):
    # the contract test (tests/systems/test_every_system.py) and quick trials use them
    smoke_params: ClassVar[dict[str, Any]] = {}
    weights_hint_: str | None = None  # where an older model folder said its weights were (a hint)
    threshold_: float | None = None
    run_: dict[str, Any] | None = None
    # what `fit_threshold` was given, kept after a fit (never saved) for systems built on others
    # (`ensemble`): {"clips": the training clips, "in_sample": their scores by the fitted model,
    # "heldout": their cross-fitted held-out scores, or None where the fit was in-sample}
    fit_scores_: dict[str, Any] | None = None
    score_norm_: dict[str, Any] | None = (
        None  # per-section (and domain) score statistics (`threshold.score_norm`)
    )
    score_norm: str
    threshold_fit: str
    threshold_folds: int
    threshold_percentile: float

    @taking_threshold_params
    def __init__(self) -> None:
        """No hyperparameters of its own: a subclass without a constructor takes the threshold
        ones only."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every system takes the threshold hyperparameters without naming them in its
        constructor: a subclass that defines ``__init__`` gets it wrapped here
        (`threshold.taking_threshold_params`), and ``inspect.signature(cls)`` lists them after
        its own."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "takes_threshold_params", False):
            cls.__init__ = taking_threshold_params(init)  # type: ignore[method-assign]
        cls.__signature__ = signature_with_threshold_params(cls)  # type: ignore[attr-defined]

    # -- hyperparameters ------------------------------------------------------------------
    @classmethod
    def constructor_param_names(cls) -> list[str]:
        """The hyperparameters the constructor names (the threshold ones are every system's)."""
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind in kinds]

    @classmethod
    def param_names(cls) -> list[str]:
        return cls.constructor_param_names() + list(THRESHOLD_PARAMS)

    def _set_params(self, values: Mapping[str, Any]) -> None:
        """Check the constructor's arguments (types from its annotations, ranges from
        ``param_rules``) and store them as attributes of the same names."""
        params = {
            k: values[k] for k in type(self).param_names() if k in values
        }  # a base class sets its share
        hints = typing.get_type_hints(type(self).__init__)
        check_params(self.name, hints, params, self.param_rules)
        for key, value in params.items():
            setattr(self, key, list(value) if isinstance(value, tuple) else value)

    def _set_threshold_params(self, values: Mapping[str, Any]) -> None:
        """Check and store the threshold hyperparameters (defaults for those not given)."""
        params = {k: values.get(k, default) for k, (_, default, _) in THRESHOLD_PARAMS.items()}
        check_params(
            self.name,
            {k: kind for k, (kind, _, _) in THRESHOLD_PARAMS.items()},
            params,
            {k: rule for k, (_, _, rule) in THRESHOLD_PARAMS.items()},
        )
        for key, value in params.items():
            setattr(self, key, value)

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as they are now (what a YAML config holds)."""
        return {p: getattr(self, p) for p in self.param_names()}

    # -- training -------------------------------------------------------------------------
    @abstractmethod
    def fit(
        self,
        train: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> System:
        """Learn from normal ``train`` clips; ``val`` may hold labelled clips for model
        selection."""

    def fit_joint(
        self,
        groups: Mapping[str, Sequence[Clip]],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> dict[str, System]:
        """Fit over every machine type in ``groups`` (machine type -> its normal training clips);
        returns one fitted, self-contained system per machine type, which is saved to its own
        model folder and scores clips of its own type. ``val`` holds labelled clips of any type.

        Default: one independent `fit` per type of a copy with this system's hyperparameters,
        with that type's ``val`` clips and ``ctx.for_run(machine)`` (same seed, checkpoints in a
        folder per type). A joint system overrides this to train one model over all groups."""
        ctx = ctx or RunContext()
        fitted: dict[str, System] = {}
        for machine, train in groups.items():
            system = type(self)(**self.get_params())
            mval = [c for c in val if c.machine == machine] if val else None
            system.fit(train, mval, ctx.for_run(machine))
            fitted[machine] = system
        return fitted

    def _begin_fit(
        self, train: Sequence[Clip], ctx: RunContext | None, minimum: int = 1
    ) -> RunContext:
        """Common start of `fit`: check the clip count, seed every generator, record the runtime."""
        if len(train) < minimum:
            raise ConfigError(
                f"{self.name}: fit needs at least {minimum} training clip(s), got {len(train)}"
            )
        ctx = ctx or RunContext()
        ctx.seed_everything()
        self.run_ = {"runtime": ctx.metadata(), "n_train": len(train)}
        return ctx

    def fingerprint(self, train: Sequence[Clip], ctx: RunContext) -> str:
        """What a training checkpoint must match to be resumed (see `engine.checkpoint`).
        ``epochs`` is left out: a run may be resumed to train for longer; so are the threshold
        hyperparameters, which do not change what the model learns. The pretrained weights
        enter by sha256 (`weights_sha256`), never by path."""
        params = {
            k: v
            for k, v in self.get_params().items()
            if k != "epochs" and k not in THRESHOLD_PARAMS
        }
        for part in self.parts:
            params[part] = {k: v for k, v in params[part].items() if k != "epochs"}
        if self.weights_sha256():
            params["weights_sha256"] = self.weights_sha256()
        return fingerprint(self.name, params, ctx.seed, train)

    def weights_sha256(self) -> str | None:
        """sha256 of the pretrained weights this system was built on (None: none)."""
        return None

    @classmethod
    def upgrade_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Saved hyperparameters of an older layout in today's (`registry.nest_flat_parts`)."""
        return nest_flat_parts(cls, params)

    # -- scoring --------------------------------------------------------------------------
    @abstractmethod
    def feature_request(self) -> FeatureRequest:
        """What the scoring pass decodes for this system (log-mel, waveform or both)."""

    @abstractmethod
    def score_decoded(self, decoded: Decoded, ctx: RunContext) -> np.ndarray:
        """Scores of one decoded chunk, higher = more anomalous."""

    def explain_decoded(self, decoded: Decoded, ctx: RunContext) -> Explanation:
        """Score and pictures of a one-clip chunk; systems with maps override this."""
        raise ConfigError(f"system {self.name!r} has no anomaly map")

    @property
    def has_anomaly_map(self) -> bool:
        """Whether `explain` gives a map (the system overrides `explain_decoded`)."""
        return type(self).explain_decoded is not System.explain_decoded

    def score(self, clips: Sequence[Clip], ctx: RunContext | None = None) -> np.ndarray:
        """Anomaly score per clip, higher = more anomalous; each file decoded once. NaN for a
        clip the audio checks left out (``--on-bad-audio skip|warn``, see `data.policy`)."""
        ctx = ctx or RunContext()
        scores = np.full(len(clips), np.nan)
        for d in iter_decoded(clips, self.feature_request(), ctx.cache_dir, ctx.progress):
            scores[d.index] = self.normalised(self.score_decoded(d, ctx), d.clips)
        return scores

    def normalised(self, scores: np.ndarray, clips: Sequence[Clip] | None) -> np.ndarray:
        """Raw scores of ``clips`` (None: in-memory waveforms) on the scale of ``score_norm``."""
        return apply_score_norm(scores, clips, self.score_norm_) if self.score_norm_ else scores

    def score_waveforms(
        self, waves: Sequence[np.ndarray], sample_rate: int = 16_000, ctx: RunContext | None = None
    ) -> np.ndarray:
        """Scores of in-memory mono waveforms (streams, uploads): no files, no cache writes."""
        ctx = ctx or RunContext()
        raw = self.score_decoded(decode_waves(waves, sample_rate, self.feature_request()), ctx)
        return self.normalised(raw, None).astype(np.float64)

    def explain(self, clip: Clip, ctx: RunContext | None = None) -> Explanation:
        """Score, input, reconstruction and anomaly map of one clip, from one pass."""
        ctx = ctx or RunContext()
        decoded = next(
            iter_decoded([clip], self._explain_request(), ctx.cache_dir, progress=False), None
        )
        if decoded is None:
            raise AudioSkipped(
                clip.path, "left out by the audio checks (--on-bad-audio); nothing to explain"
            )
        return self._explained(self.explain_decoded(decoded, ctx), [clip])

    def _explained(self, ex: Explanation, clips: Sequence[Clip] | None) -> Explanation:
        ex.score = float(self.normalised(np.array([ex.score]), clips)[0])
        return ex

    def explain_waveform(
        self, wave: np.ndarray, sample_rate: int = 16_000, ctx: RunContext | None = None
    ) -> Explanation:
        """`explain` of an in-memory mono waveform (a kept upload): no files, no cache writes."""
        ctx = ctx or RunContext()
        return self._explained(
            self.explain_decoded(decode_waves([wave], sample_rate, self._explain_request()), ctx),
            None,
        )

    def _explain_request(self) -> FeatureRequest:
        """What `explain` decodes: the scoring request, with the log-mel always (the picture's
        input)."""
        request = self.feature_request()
        return dataclasses.replace(request, logmel=request.logmel or LogMelParams())

    def anomaly_map(self, clip: Clip, ctx: RunContext | None = None) -> np.ndarray:
        """Where in (mel bin, frame) the clip looks abnormal (see `explain`)."""
        amap = self.explain(clip, ctx).anomaly_map
        if amap is None:
            raise ConfigError(f"system {self.name!r} has no anomaly map")
        return amap

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """1 = anomaly where the score exceeds the threshold learned in `fit`."""
        if self.threshold_ is None:
            raise RuntimeError("the system is not fitted: no decision threshold")
        return (np.asarray(scores) > self.threshold_).astype(int)

    def fit_threshold(
        self,
        train_scores: np.ndarray,
        train: Sequence[Clip],
        ctx: RunContext,
        minimum: int = 1,
        heldout: Callable[[list[np.ndarray]], np.ndarray] | None = None,
    ) -> None:
        """Set `threshold_`: the gamma fit (at ``threshold_percentile``) of the fitted model's
        ``train_scores`` (in_sample) or of held-out scores of the ``train`` clips (crossfit).

        Held-out scores come from ``heldout(folds)`` where a system can compute them cheaply
        (e.g. refitting a detector on embeddings), else from `crossfit_scores`. With too few
        clips for folds of at least ``minimum`` training clips the fit is in-sample, with a
        warning. The run record's ``threshold`` entry says which fit was used and summarises
        the scores."""
        info: dict[str, Any] = {
            "fit": self.threshold_fit,
            "percentile": self.threshold_percentile,
            "in_sample_scores": score_summary(train_scores),
            "in_sample_threshold": gamma_threshold(train_scores, self.threshold_percentile),
        }
        scores = in_sample = np.asarray(train_scores, dtype=np.float64)
        heldout_scores = None
        if self.threshold_fit == CROSSFIT:
            folds = crossfit_folds(
                len(train),
                self.threshold_folds,
                ctx.seed,
                minimum,
                groups=[c.domain or "none" for c in train],
            )
            if folds is None:
                info.update(
                    fit=IN_SAMPLE,
                    note=f"{len(train)} training clips are too few for cross-fitting "
                    f"(folds need {minimum}+ training clips); fitted in-sample",
                )
                warnings.warn(f"{self.name}: {info['note']}", stacklevel=2)
            else:
                scores = heldout(folds) if heldout else self.crossfit_scores(train, folds, ctx)
                heldout_scores = scores = np.asarray(scores, dtype=np.float64)
                info.update(folds=len(folds), heldout_scores=score_summary(scores))
        self.score_norm_ = fit_score_norm(
            scores, train, self.score_norm
        )  # held-out statistics where there are
        if self.score_norm_:
            scores, in_sample = (
                apply_score_norm(scores, train, self.score_norm_),
                apply_score_norm(in_sample, train, self.score_norm_),
            )
            heldout_scores = scores if heldout_scores is not None else None
            info["score_norm"] = self.score_norm_
        self.fit_scores_ = {"clips": list(train), "in_sample": in_sample, "heldout": heldout_scores}
        self.threshold_ = gamma_threshold(scores, self.threshold_percentile)
        info["threshold"] = self.threshold_
        self.run_ = {**(self.run_ or {}), "threshold": info}

    def fold_params(self) -> dict[str, Any]:
        """Hyperparameters of the copies that give held-out scores: the system's own, with an
        in-sample threshold (a fold's threshold is never used). Systems that choose something
        while fitting fix that choice here, so that every fold scores the way the system does."""
        return {
            **self.get_params(),
            "threshold_fit": IN_SAMPLE,
            "score_norm": "none",
        }  # raw held-out scores

    def crossfit_scores(
        self, train: Sequence[Clip], folds: Sequence[np.ndarray], ctx: RunContext
    ) -> np.ndarray:
        """Held-out score of every ``train`` clip: per fold, a copy trained by the engine on the
        other folds (seed ``ctx.seed + k``, checkpoints in ``threshold/fold<k>``) scores it."""
        out = np.zeros(len(train))
        for held, system, fold_ctx in self.crossfit_models(train, folds, ctx):
            out[held] = system.score([train[i] for i in held], fold_ctx)
        return out

    def crossfit_models(
        self, train: Sequence[Clip], folds: Sequence[np.ndarray], ctx: RunContext
    ) -> typing.Iterator[tuple[np.ndarray, System, RunContext]]:
        """(held-out indices, the copy fitted on the other clips, its context) per fold."""
        for k, held in enumerate(
            progress(
                folds, desc=f"threshold folds ({self.name})", unit="fold", enabled=ctx.progress
            )
        ):
            fold_ctx = ctx.replace(seed=ctx.seed + k).for_run("threshold", f"fold{k}")
            rest = np.setdiff1d(np.arange(len(train)), held)
            system = type(self)(**self.fold_params())
            system.fit([train[i] for i in rest], ctx=fold_ctx)
            yield held, system, fold_ctx

    # -- persistence ------------------------------------------------------------------------
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
