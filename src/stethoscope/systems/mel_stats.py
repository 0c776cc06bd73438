"""`mel_stats`: per-bin log-mel statistics scored by a shrinkage Mahalanobis distance.

A clip is summarised by statistics of each mel bin's level over time (mean, standard
deviation, 10th and 90th percentiles and maximum by default: 640 numbers for 128 bins),
optionally with modulation features (the spectrum of band envelopes over time). The
features are standardised on the training normals and scored by a detector from
`detectors/`: Ledoit-Wolf Mahalanobis (default), kNN or GMM. Detectors are fitted per
section and, where the training clips carry domains with at least two clips each, per
domain; a clip is scored by its section's detectors (every detector for a section not seen
in training, or an in-memory waveform), taking the smallest score: the DCASE 2023
baseline's rule for test clips of unknown domain. Fitting takes seconds, as no network is
trained: in the few-shot regime (10-100 normal clips) this summary matched or beat the deep
systems on real recordings (docs/mel_stats.md, docs/RESULTS.md section 14).

The scoring network is `models.mel_stats.MelStatsScorer`; `score`, `explain` and ONNX
export all run it. Saved state: each group's training features (its detector is refitted on
load, deterministically, as `embedding_knn` does) and the groups' sections and domains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..data.clip import Clip
from ..detectors import get_detector
from ..detectors.embedding import TrainingSetDetector
from ..detectors.module import DetectorModule
from ..engine import RunContext
from ..errors import CheckpointError, ConfigError
from ..features.extract import Decoded, FeatureRequest, iter_decoded
from ..features.logmel import LogMelParams
from ..models.mel_stats import (
    DEFAULT_STATS,
    STATISTICS,
    MelStatsFeatures,
    MelStatsScorer,
    features_of,
)
from .base import Explanation, System, register
from .export_plan import ExportPlan, batch_dim, clip_samples

DETECTOR_CHOICES = ("mahalanobis", "knn", "gmm")


@register
class MelStatsSystem(System):
    """Per-bin log-mel statistics + shrinkage Mahalanobis (or kNN / GMM), per section and domain."""

    name = "mel_stats"
    no_export = None
    description = (
        "per-bin log-mel statistics + Ledoit-Wolf Mahalanobis (or kNN / GMM); fits in seconds"
    )
    smoke_params: ClassVar[dict[str, Any]] = {"modulation_bands": 4, "min_group_clips": 2}
    param_rules: ClassVar[dict[str, Any]] = {
        "detector": DETECTOR_CHOICES,
        "n_neighbors": "[1, inf)",
        "n_components": "[1, inf)",
        "modulation_bands": "[0, 64]",
        "modulation_bins": "[1, 32]",
        "n_mels": "[1, inf)",
        "min_group_clips": "[2, inf)",
        "log_floor": ("max", "add"),
    }

    # hyperparameters: the constructor's arguments, stored by `_set_params`
    stats: Sequence[str]
    modulation_bands: int
    modulation_bins: int
    detector: str
    n_neighbors: int
    n_components: int
    per_section: bool
    per_domain: bool
    min_group_clips: int
    n_mels: int
    log_floor: str

    def __init__(
        self,
        *,
        stats: Sequence[str] = DEFAULT_STATS,
        modulation_bands: int = 0,
        modulation_bins: int = 8,
        detector: str = "mahalanobis",
        n_neighbors: int = 2,
        n_components: int = 1,
        per_section: bool = True,
        per_domain: bool = True,
        min_group_clips: int = 8,
        n_mels: int = 128,
        log_floor: str = "max",
    ) -> None:
        self._set_params(locals())
        bad = [s for s in self.stats if s not in STATISTICS] if self.stats else ["(none)"]
        if bad or len(set(self.stats)) != len(self.stats):
            raise ConfigError(
                f"mel_stats: stats must be distinct names from {list(STATISTICS)}, got {self.stats}"
            )
        self.groups_: list[dict[str, Any]] | None = None  # per group: section, domain, clip count
        self.detectors_: list[TrainingSetDetector] | None = None
        self.scorer_: MelStatsScorer | None = None
        self._seed = 0

    # -- pieces -----------------------------------------------------------------------
    @property
    def logmel_params(self) -> LogMelParams:
        return LogMelParams(n_mels=self.n_mels, log_floor=self.log_floor)

    def feature_request(self) -> FeatureRequest:
        return FeatureRequest(logmel=self.logmel_params, min_frames=2)

    def _features_module(self) -> MelStatsFeatures:
        return MelStatsFeatures(
            self.n_mels, self.stats, self.modulation_bands, self.modulation_bins
        )

    def _detector(self) -> TrainingSetDetector:
        params: dict[str, Any] = {"standardize": True}
        if self.detector == "knn":
            params["n_neighbors"] = self.n_neighbors
        if self.detector == "gmm":
            params.update(n_components=self.n_components, seed=self._seed)
        return get_detector(self.detector, **params)  # type: ignore[return-value]

    def features(self, logmels: Sequence[np.ndarray]) -> np.ndarray:
        """(n, D) features of log-mels (dB) of any lengths."""
        return features_of(self._features_module(), logmels)

    def plan_groups(self, clips: Sequence[Clip]) -> list[tuple[dict[str, Any], np.ndarray]]:
        """(section and domain, clip indices) of each detector to fit: one per section (one for
        all with ``per_section`` off, or where a section has fewer than ``min_group_clips``), split
        by domain where every domain has ``min_group_clips`` or more."""
        sections: dict[str | None, list[int]] = {}
        for i, c in enumerate(clips):
            sections.setdefault(c.section if self.per_section else None, []).append(i)
        if (
            min(map(len, sections.values())) < self.min_group_clips
        ):  # too few for a detector of its own
            sections = {None: list(range(len(clips)))}
        plan = []
        for section, idx in sorted(sections.items(), key=lambda kv: str(kv[0])):
            domains: dict[str, list[int]] = {}
            for i in idx:
                domains.setdefault(clips[i].domain or "", []).append(i)
            split = (
                self.per_domain
                and len(domains) > 1
                and "" not in domains
                and min(map(len, domains.values())) >= self.min_group_clips
            )
            for domain, members in sorted(domains.items()) if split else [(None, idx)]:
                plan.append(
                    ({"section": section, "domain": domain, "n": len(members)}, np.asarray(members))
                )
        return plan

    def _fit_detectors(
        self, X: np.ndarray, plan: list[tuple[dict[str, Any], np.ndarray]]
    ) -> list[TrainingSetDetector]:
        return [self._detector().fit(X[idx]) for _, idx in plan]

    def _build_scorer(self) -> None:
        assert self.detectors_ is not None
        scales = [(det.scaler_.mean_, det.scaler_.scale_) for det in self.detectors_]  # type: ignore[union-attr]
        self.scorer_ = MelStatsScorer(
            self._features_module(),
            [DetectorModule(d) for d in self.detectors_],
            [(torch.from_numpy(m), torch.from_numpy(s)) for m, s in scales],
        )

    def groups_for(
        self, clip: Clip | None, groups: Sequence[dict[str, Any]] | None = None
    ) -> list[int] | None:
        """The detectors (of ``groups``, default the fitted ones) that score ``clip``: its
        section's, or all (``None``) for a section not seen in training, a pooled fit or an
        in-memory waveform."""
        groups = self.groups_ if groups is None else groups
        if clip is None or groups is None:
            return None
        mine = [g for g, info in enumerate(groups) if info["section"] == clip.section]
        return mine or None

    # -- System contract --------------------------------------------------------------
    def fit(
        self,
        train: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> MelStatsSystem:
        del val  # nothing is selected on validation data
        ctx = self._begin_fit(train, ctx, minimum=2)
        self._seed = ctx.seed
        kept: list[Clip] = []
        mels: list[np.ndarray] = []
        for part in iter_decoded(train, self.feature_request(), ctx.cache_dir, ctx.progress):
            kept += part.clips  # type: ignore[arg-type]
            mels += part.logmels  # type: ignore[arg-type]
        if len(kept) < 2:
            raise ConfigError(
                f"{self.name}: needs 2+ training clips the audio checks keep, got {len(kept)}"
            )
        X = self.features(mels)
        plan = self.plan_groups(kept)
        self.groups_ = [info for info, _ in plan]
        self.detectors_ = self._fit_detectors(X, plan)
        self._build_scorer()
        in_sample = np.zeros(len(kept))
        for (_, idx), det in zip(plan, self.detectors_, strict=True):
            in_sample[idx] = det.train_scores()
        self.fit_threshold(
            in_sample, kept, ctx, minimum=2, heldout=lambda folds: self._heldout(X, kept, folds)
        )
        return self

    def _heldout(
        self, X: np.ndarray, clips: Sequence[Clip], folds: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Each fold's clips scored by detectors fitted on the other folds' features (min over
        the detectors of the clip's section, as in scoring)."""
        out = np.zeros(len(X))
        for held in folds:
            rest = np.setdiff1d(np.arange(len(X)), held)
            plan = [(info, rest[idx]) for info, idx in self.plan_groups([clips[i] for i in rest])]
            scores = np.stack(
                [d.score(X[held]) for d in self._fit_detectors(X, plan)], axis=1
            )  # (held, groups)
            infos = [info for info, _ in plan]
            for row, i in enumerate(held):
                out[i] = scores[row, self.groups_for(clips[i], infos) or slice(None)].min()
        return out

    def _scores(
        self,
        logmels: Sequence[np.ndarray],
        clips: Sequence[Clip] | None,
        ctx: RunContext,
        maps_too: bool = False,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        if self.scorer_ is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        scores, maps = np.zeros(len(logmels)), [np.empty(0)] * len(logmels)
        keyed: dict[tuple[int, tuple[int, ...] | None], list[int]] = {}
        for i, mel in enumerate(logmels):
            mine = self.groups_for(clips[i] if clips else None)
            keyed.setdefault((mel.shape[1], tuple(mine) if mine else None), []).append(i)
        for (_, groups), idx in keyed.items():
            batch = torch.from_numpy(np.stack([logmels[i] for i in idx]))
            with torch.no_grad():
                if not maps_too:
                    scores[idx] = self.scorer_.score(batch, groups)[0].numpy()
                    continue
                s, m = self.scorer_(batch, groups)
            scores[idx] = s.numpy()
            for k, i in enumerate(idx):
                maps[i] = m[k].numpy()
        return scores, maps

    def score_decoded(self, decoded: Decoded, ctx: RunContext) -> np.ndarray:
        return self._scores(decoded.logmels or [], decoded.clips, ctx)[0]

    def explain_decoded(self, decoded: Decoded, ctx: RunContext) -> Explanation:
        """The score and each (mel bin, frame)'s share of the squared standardised deviations."""
        logmels = decoded.required_logmels()
        scores, maps = self._scores(logmels, decoded.clips, ctx, maps_too=True)
        assert maps is not None  # maps_too=True returns them
        return Explanation(
            score=float(scores[0]),
            logmel=logmels[0],
            anomaly_map=maps[0],
            map_title="squared standardised deviation of the bin statistics, spread over frames",
            map_unit="squared z per frame",
        )

    # -- scoring module and export ----------------------------------------------------
    def scoring_module(self) -> MelStatsScorer:
        """`MelStatsScorer`: the very module `score` and `explain` run."""
        if self.scorer_ is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        return self.scorer_

    def export_plan(
        self, seconds: float | None = None, ctx: RunContext | None = None
    ) -> ExportPlan:
        """One clip length (``seconds``, default 10): the percentiles index frames. Every
        section's detectors score, the smallest score wins (as an in-memory waveform)."""
        self.refuse_export()
        samples = clip_samples(seconds)
        frames = self.logmel_params.n_frames(samples)
        details = {"detector": self.detector, "stats": self.stats, "groups": self.groups_}
        return ExportPlan(
            self.scoring_module(),
            {"logmel": torch.randn(2, self.n_mels, frames)},
            {"logmel": {0: batch_dim()}},
            {"logmel": self.logmel_params},
            ["score", "anomaly_map"],
            samples,
            details,
        )

    # -- persistence ------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.detectors_ is None:
            raise RuntimeError(f"{self.name}: nothing to save, the system is not fitted")
        return {
            f"g{g}.{k}": torch.from_numpy(np.ascontiguousarray(v))
            for g, det in enumerate(self.detectors_)
            for k, v in det.state().items()
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.groups_ is None:
            raise CheckpointError(f"{self.name}: config.json holds no detector groups")
        dets = []
        for g in range(len(self.groups_)):
            state = {
                k.split(".", 1)[1]: v.numpy() for k, v in tensors.items() if k.startswith(f"g{g}.")
            }
            if "train" not in state:
                raise CheckpointError(
                    f"{self.name}: saved weights hold no training features of group {g}"
                )
            dets.append(type(self._detector()).from_state(state, **self._detector().get_params()))
        self.detectors_ = dets
        self._build_scorer()

    def extra_state(self) -> dict[str, Any]:
        return {"groups": self.groups_, "seed": self._seed}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._seed = int(state.get("seed", 0))
        groups = state.get("groups")
        if not isinstance(groups, list) or not groups:
            raise CheckpointError(
                f"{self.name}: config.json's extra_state.groups is missing or empty"
            )
        self.groups_ = groups
