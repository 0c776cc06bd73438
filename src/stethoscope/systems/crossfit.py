"""How every system fits its decision threshold (`ThresholdFitting`, a mixin of `System`).

The gamma threshold is fitted to cross-fitted held-out scores of the training clips by default,
or in-sample as the DCASE baselines do; the scores are standardised per section (and domain)
where ``score_norm`` asks (see `threshold`). Kept apart from `base` so that the contract there
reads as the contract: what a system implements, not how the shared threshold fit works.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..data.clip import Clip
from ..engine.context import RunContext
from ..progress import progress
from .threshold import (
    CROSSFIT,
    IN_SAMPLE,
    apply_score_norm,
    crossfit_folds,
    fit_score_norm,
    gamma_threshold,
    score_summary,
)

_S = TypeVar("_S", bound="ThresholdFitting")


class ThresholdFitting(ABC):
    """The threshold fit every `System` shares: `fit_threshold` and the cross-fitting behind it
    (`fold_params`, `crossfit_scores`, `crossfit_models`), with the state it sets."""

    name: ClassVar[str]
    threshold_: float | None = None
    run_: dict[str, Any] | None = None
    # what `fit_threshold` was given, kept after a fit (never saved) for systems built on others
    # (`ensemble`): {"clips": the training clips, "in_sample": their scores by the fitted model,
    # "heldout": their cross-fitted held-out scores, or None where the fit was in-sample}
    fit_scores_: dict[str, Any] | None = None
    # per-section (and domain) score statistics (`threshold.score_norm`)
    score_norm_: dict[str, Any] | None = None
    score_norm: str
    threshold_fit: str
    threshold_folds: int
    threshold_percentile: float

    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as they are now (`System.get_params`)."""

    @abstractmethod
    def score(self, clips: Sequence[Clip], ctx: RunContext | None = None) -> np.ndarray:
        """Anomaly score per clip (`System.score`)."""

    @abstractmethod
    def fit(
        self,
        train: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> ThresholdFitting:
        """Learn from normal clips (`System.fit`)."""

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
        self: _S, train: Sequence[Clip], folds: Sequence[np.ndarray], ctx: RunContext
    ) -> Iterator[tuple[np.ndarray, _S, RunContext]]:
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
