"""`auto`: an ensemble of candidate systems for a user who cannot tell which one to trust.

Every candidate is fitted on the same normal clips, and its scores are normalised by the
distribution of its held-out training scores (as `ensemble` does), so that they share one
scale. How they are combined is ``weighting``:

* ``equal`` (default): the mean of the normalised scores. Measured on the real sets, the
  pseudo AUC did not predict the real AUC well enough to weight by it (docs/RESULTS.md
  section 14.3), so the robust choice is the default.
* ``pseudo``: each candidate's weight is its pseudo AUC above chance, ``max(0, AUC - 0.5)``,
  from pseudo-anomaly validation on the training clips alone (`evaluation.pseudo`); equal
  weights where no candidate beats chance.
* ``select``: all weight on the candidate with the best pseudo AUC.

The pseudo AUCs and the weights are kept in the model folder (``extra_state``) and the run
record, so a user can see what was chosen and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

import numpy as np

from ..data.clip import Clip
from ..data.pseudo_anomaly import SEVERITIES
from ..engine import RunContext
from ..errors import ConfigError
from ..evaluation.pseudo import pseudo_validate
from .base import register
from .ensemble import NORMALISE, EnsembleSystem

WEIGHTING = ("equal", "pseudo", "select")


@register
class AutoSystem(EnsembleSystem):
    """Candidates' normalised scores combined with equal weights or by pseudo-anomaly validation."""

    name = "auto"
    description = (
        "candidate systems' normalised scores, averaged (or weighted by pseudo-anomaly AUC)"
    )
    smoke_params: ClassVar[dict[str, Any]] = {
        "members": ["mel_stats", "dcase_ae"],
        "weighting": "pseudo",
        "pseudo_folds": 2,
        "pseudo_severities": [3],
        "member_params": {"dcase_ae": {"epochs": 1, "batch_size": 64, "threshold_folds": 2}},
    }
    param_rules: ClassVar[dict[str, Any]] = {
        "normalise": NORMALISE,
        "weighting": WEIGHTING,
        "pseudo_folds": "[2, inf)",
    }
    no_export = (
        "its candidates each need their own front end and scoring module, and its score "
        "normalisation is not exported; export the candidates one by one"
    )

    # hyperparameters: the constructor's arguments, stored by `_set_params`
    weighting: str
    pseudo_folds: int
    pseudo_severities: Sequence[int]

    def __init__(
        self,
        *,
        members: Sequence[str] = ("mel_stats", "dcase_ae"),
        member_params: dict[str, dict[str, Any]] | None = None,
        normalise: str = "zscore",
        weighting: str = "equal",
        pseudo_folds: int = 3,
        pseudo_severities: Sequence[int] = SEVERITIES,
    ) -> None:
        self.weights: list[float] | None = None  # learned here (weights_), never a hyperparameter
        self._set_params(locals())
        bad = [s for s in self.pseudo_severities if s not in SEVERITIES]
        if bad or not self.pseudo_severities:
            raise ConfigError(
                f"auto: pseudo_severities must be a non-empty list of {list(SEVERITIES)}, "
                f"got {self.pseudo_severities}"
            )
        self._init_members()
        if self.joint:
            raise ConfigError(
                "auto: joint systems (fitted over all machine types at once) cannot be candidates"
            )
        self.weights_: list[float] | None = None
        self.pseudo_: dict[str, Any] | None = None

    def fit(
        self,
        train: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> AutoSystem:
        ctx = ctx or RunContext()
        self.weights_, self.pseudo_ = [1.0] * len(self.members), None
        if self.weighting != "equal":
            aucs = {}
            for i, name in enumerate(self.members):
                res = pseudo_validate(
                    partial(self._member, i),
                    train,
                    self._member_ctx(ctx, i),
                    folds=self.pseudo_folds,
                    severities=self.pseudo_severities,
                )
                aucs[name] = res["auc"]
            self.pseudo_ = {"auc": aucs}
            self.weights_ = pseudo_weights([aucs[m] for m in self.members], self.weighting)
        super().fit(train, val, ctx)
        self.run_ = {
            **(self.run_ or {}),
            "weighting": self.weighting,
            "weights": self.weights_,
            **({"pseudo_auc": self.pseudo_["auc"]} if self.pseudo_ else {}),
        }
        return self

    def _weights(self) -> np.ndarray:
        return np.asarray(self.weights_ or [1.0] * len(self.members), dtype=np.float64)

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "weights": self.weights_, "pseudo": self.pseudo_}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        weights = state.get("weights")
        if weights is not None and (
            not isinstance(weights, list) or len(weights) != len(self.members)
        ):
            raise ConfigError(
                f"auto: config.json's extra_state.weights must list one weight per member "
                f"{self.members}, got {weights!r}"
            )
        self.weights_, self.pseudo_ = weights, state.get("pseudo")


def pseudo_weights(aucs: Sequence[float], weighting: str) -> list[float]:
    """Weights from pseudo AUCs: ``pseudo`` each one's margin above chance (equal where none is
    above), ``select`` one-hot on the best (the first of ties)."""
    a = np.asarray(aucs, dtype=np.float64)
    if weighting == "select":
        return [float(i == int(np.argmax(a))) for i in range(len(a))]
    margin = np.maximum(a - 0.5, 0.0)
    return (margin / margin.sum()).tolist() if margin.sum() > 0 else [1.0 / len(a)] * len(a)


__all__ = ["WEIGHTING", "AutoSystem", "pseudo_weights"]
