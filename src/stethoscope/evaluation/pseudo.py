"""Pseudo-anomaly validation: how well a system separates a user's own normal clips from
pseudo-anomalies made of them, measured without a single real anomaly.

The normal clips are split into folds. Per fold a fresh system is fitted on the other folds'
clips (in-sample threshold: the AUC ignores it) and scores the held-out normals and
pseudo-anomalies synthesised from those held-out normals (`data.pseudo_anomaly`), all as
in-memory waveforms, so that both sides go through the same scoring path. The AUC of
pseudo-anomalies against held-out normals, averaged over folds, is the system's pseudo AUC;
it is also given per kind of pseudo-anomaly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from ..data.clip import Clip
from ..data.pseudo_anomaly import KINDS, SEVERITIES, pseudo_anomalies
from ..engine import RunContext
from ..errors import ConfigError
from ..features.extract import FeatureRequest, iter_decoded

if TYPE_CHECKING:  # systems import this module (`auto`): no import at run time, no cycle
    from ..systems.base import System


def pseudo_validate(
    make_system: Callable[[], System],
    normals: Sequence[Clip],
    ctx: RunContext | None = None,
    folds: int = 3,
    kinds: Sequence[str] = tuple(KINDS),
    severities: Sequence[int] = SEVERITIES,
    max_sources: int = 8,
) -> dict[str, Any]:
    """The pseudo AUC of the systems ``make_system()`` builds, from ``normals`` alone.

    At most ``max_sources`` held-out normals per fold give pseudo-anomalies (every kind and
    severity of each), which bounds the scoring cost on large sets."""
    ctx = ctx or RunContext()
    if len(normals) < 3:
        raise ConfigError(
            f"pseudo-anomaly validation needs at least 3 normal clips, got {len(normals)}"
        )
    waves: list[np.ndarray] = [np.empty(0)] * len(normals)
    for part in iter_decoded(
        normals, FeatureRequest(wave=True, min_frames=2), ctx.cache_dir, progress=False
    ):
        for i, w in zip(part.index or [], part.waves or [], strict=True):
            waves[i] = w
    usable = np.array([i for i, w in enumerate(waves) if len(w)])
    k = min(folds, len(usable))
    per_fold: list[float] = []
    per_kind: dict[str, list[float]] = {kind: [] for kind in kinds}
    splitter = KFold(n_splits=k, shuffle=True, random_state=ctx.seed)
    for f, (rest, held) in enumerate(splitter.split(usable)):
        system = make_system()
        system.threshold_fit = "in_sample"  # the AUC ignores the threshold: no folds inside folds
        fold_ctx = ctx.replace(seed=ctx.seed + f).for_run("pseudo", f"fold{f}")
        system.fit([normals[i] for i in usable[rest]], ctx=fold_ctx)
        held_waves = [waves[i] for i in usable[held]]
        normal_scores = system.score_waveforms(held_waves, ctx=fold_ctx)
        made = list(
            pseudo_anomalies(
                held_waves[:max_sources], seed=ctx.seed + f, kinds=kinds, severities=severities
            )
        )
        anomaly_scores = system.score_waveforms([w for *_, w in made], ctx=fold_ctx)
        per_fold.append(_auc(normal_scores, anomaly_scores))
        for kind in kinds:
            mine = np.array([m[1] == kind for m in made])
            per_kind[kind].append(_auc(normal_scores, anomaly_scores[mine]))
    return {
        "auc": float(np.mean(per_fold)),
        "folds": per_fold,
        "per_kind": {kind: float(np.mean(v)) for kind, v in per_kind.items()},
        "n_normal": len(usable),
        "kinds": list(kinds),
        "severities": list(severities),
    }


def _auc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(labels, np.r_[normal, anomalous]))
