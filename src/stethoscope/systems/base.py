"""The `System` contract every trainable detector follows, its registry and persistence.

A system is fitted on normal clips of one machine type and returns one score per clip
(higher = more anomalous). Hyperparameters are constructor arguments (sklearn-style),
checked on construction, so that a YAML config mirrors them; runtime settings (device,
seed, threads, cache, checkpoints, progress) arrive separately as a `RunContext`.

Every scoring path decodes each clip once: `score`, `score_waveforms` and `explain` build
`Decoded` chunks holding what the system's `feature_request` asks for, and the system's
`score_decoded` / `explain_decoded` feed every branch from them. A model directory holds
``config.json`` and ``weights.safetensors``; nothing is pickled (`persistence`, a mixin).

The decision threshold is fitted once for every system (`System.fit_threshold`, from the
`crossfit` mixin): to cross-fitted held-out training scores by default, or in-sample as the
DCASE baselines do (see `threshold`).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..data.clip import Clip
from ..engine.checkpoint import fingerprint
from ..engine.context import RunContext
from ..errors import AudioSkipped, ConfigError
from ..features.extract import Decoded, FeatureRequest, decode_waves, iter_decoded
from ..features.logmel import LogMelParams
from .crossfit import ThresholdFitting
from .export_plan import Exportable
from .params import check_params
from .persistence import CONFIG_FILE, WEIGHTS_FILE, Persistent, load_system
from .registry import (
    REGISTRY,
    get_system,
    list_systems,
    nest_flat_parts,
    register,
)
from .threshold import (
    THRESHOLD_PARAMS,
    apply_score_norm,
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


class System(Exportable, ThresholdFitting, Persistent, ABC):
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
    # the threshold state (`threshold_`, `score_norm_`, `fit_scores_`) and hyperparameters are
    # declared by `crossfit.ThresholdFitting`; the run record `run_` by both mixins

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
