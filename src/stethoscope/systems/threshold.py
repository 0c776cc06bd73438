"""Decision thresholds: the DCASE gamma fit, and which normal scores it is fitted to.

Every system has three threshold hyperparameters (`THRESHOLD_PARAMS`), taken by every
constructor (`System.__init_subclass__` wraps each with `taking_threshold_params`):

* ``threshold_fit``: ``crossfit`` (default) fits the gamma distribution to *held-out* scores
  of the training clips: the clips are split into ``threshold_folds`` folds, a copy of the
  system is fitted on the other folds and scores the held-out one. Those scores behave like
  the scores of new normal clips, so about ``1 - threshold_percentile`` of new normals land
  above the threshold. ``in_sample`` fits it to the final model's scores of its own training
  clips, as the DCASE baselines do: a trained model reconstructs (or neighbours) its own
  clips better than new ones, so that threshold is too low and flags most new normals.
* ``threshold_folds``: K, capped by the number of clips. A trainable system trains K more
  models on (K - 1) / K of the clips each, so training takes about 1 + K (K - 1) / K = K
  times as long as one model; embedding systems refit only their detector per fold.
* ``threshold_percentile``: the gamma distribution's quantile taken as the threshold (0.9).
* ``score_norm``: ``none`` (default), ``section`` or ``section_domain``: every score is
  standardised by the mean and standard deviation of the held-out (else in-sample) training
  scores of its clip's section (and domain), so that one threshold serves every section and
  domain, as the DCASE 2025 top systems do (`fit_score_norm`). A clip of unknown domain takes
  the smallest of its section's domain z-scores (the DCASE 2023 baseline's rule); a clip of a
  section not seen in training, or an in-memory waveform, the pooled statistics.
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.stats
from sklearn.model_selection import KFold, StratifiedKFold

CROSSFIT, IN_SAMPLE = "crossfit", "in_sample"
# key -> (type, default, rule as in `params.check_params`)
THRESHOLD_PARAMS: dict[str, tuple[type, Any, Any]] = {
    "threshold_fit": (str, CROSSFIT, (CROSSFIT, IN_SAMPLE)),
    "threshold_folds": (int, 4, "[2, inf)"),
    "threshold_percentile": (float, 0.9, "(0, 1)"),
    "score_norm": (str, "none", ("none", "section", "section_domain")),
}
MIN_NORM_CLIPS = (
    3  # a group with fewer training scores borrows its section's (or the pooled) statistics
)


def gamma_threshold(scores: np.ndarray, percentile: float = 0.9) -> float:
    """DCASE decision threshold: a gamma distribution fitted to normal scores, its
    ``percentile`` quantile."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2 or np.ptp(scores) == 0:
        return float(scores.max()) if len(scores) else float("inf")
    shape, loc, scale = scipy.stats.gamma.fit(scores)
    return float(scipy.stats.gamma.ppf(q=percentile, a=shape, loc=loc, scale=scale))


def crossfit_folds(
    n: int, folds: int, seed: int, minimum: int = 1, groups: Sequence[str] | None = None
) -> list[np.ndarray] | None:
    """Held-out index sets of ``min(folds, n)`` shuffled folds over ``n`` clips (fixed by ``seed``);
    None when a fold's training part would hold fewer than ``minimum`` clips.

    With ``groups`` (the clips' domains) of more than one kind, each fold holds its share of
    every group: a rare domain (DCASE 2022+: 10 target clips of 1,000) is then never held out
    whole, which would leave a fold model without it and its held-out scores far off."""
    k = min(folds, n)
    if k < 2 or n - math.ceil(n / k) < minimum:
        return None
    index = np.arange(n)
    if groups is not None and len(set(groups)) > 1 and max(Counter(groups).values()) >= k:
        with warnings.catch_warnings():  # a group smaller than k is spread over folds, as wanted
            warnings.filterwarnings(
                "ignore", message="The least populated class", category=UserWarning
            )
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed % 2**32)
            return [held for _, held in splitter.split(index, list(groups))]
    return [
        held for _, held in KFold(n_splits=k, shuffle=True, random_state=seed % 2**32).split(index)
    ]


def score_summary(scores: np.ndarray) -> dict[str, float | int]:
    """What the run record keeps of a set of scores."""
    scores = np.asarray(scores, dtype=np.float64)
    return {
        "n": len(scores),
        "min": float(scores.min()),
        "median": float(np.median(scores)),
        "mean": float(scores.mean()),
        "p90": float(np.percentile(scores, 90)),
        "max": float(scores.max()),
    }


def false_alarm_rate(normal_scores: np.ndarray, threshold: float) -> float:
    """Share of normal clips whose score is above the threshold (decided anomalous)."""
    return float(np.mean(np.asarray(normal_scores) > threshold))


def _stats(scores: np.ndarray) -> dict[str, float]:
    std = float(np.std(scores))
    return {"mean": float(np.mean(scores)), "std": std if std > 0 else 1.0}


def fit_score_norm(scores: np.ndarray, clips: Sequence[Any], mode: str) -> dict[str, Any] | None:
    """Statistics of the training ``scores`` per section (and domain): {"pooled": ..., "groups":
    {"<section>" or "<section>/<domain>": {"mean", "std"}}}; None for ``mode`` none. Groups with
    fewer than `MIN_NORM_CLIPS` scores are left out (their clips use the next wider statistics)."""
    if mode == "none":
        return None
    scores = np.asarray(scores, dtype=np.float64)
    keys: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        keys.setdefault(clip.section, []).append(i)
        if mode == "section_domain" and clip.domain:
            keys.setdefault(f"{clip.section}/{clip.domain}", []).append(i)
    groups = {
        k: _stats(scores[idx]) for k, idx in sorted(keys.items()) if len(idx) >= MIN_NORM_CLIPS
    }
    return {"mode": mode, "pooled": _stats(scores), "groups": groups}


def _zscore(score: float, stats: dict[str, Any]) -> float:
    return (score - stats["mean"]) / stats["std"]


def apply_score_norm(
    scores: np.ndarray, clips: Sequence[Any] | None, norm: dict[str, Any] | None
) -> np.ndarray:
    """``scores`` as z-scores under `fit_score_norm`'s statistics (unchanged without them)."""
    scores = np.asarray(scores, dtype=np.float64)
    if norm is None:
        return scores
    groups, out = norm["groups"], np.empty(len(scores))
    for i, s in enumerate(scores):
        clip = clips[i] if clips is not None else None
        section = groups.get(clip.section) if clip is not None else None
        if clip is not None and norm["mode"] == "section_domain":
            mine = [
                st
                for k, st in groups.items()
                if k.startswith(f"{clip.section}/")
                and (clip.domain is None or k == f"{clip.section}/{clip.domain}")
            ]
            if mine:
                out[i] = min(_zscore(s, st) for st in mine)
                continue
        out[i] = _zscore(s, section or norm["pooled"])
    return out


def taking_threshold_params(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` (a system's constructor) that also takes the threshold hyperparameters: they are
    taken out of the keyword arguments before ``init`` runs, then checked and set
    (`System._set_threshold_params`; defaults for those not given)."""

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        threshold = {k: kwargs.pop(k) for k in THRESHOLD_PARAMS if k in kwargs}
        init(self, *args, **kwargs)
        self._set_threshold_params(threshold)

    __init__.takes_threshold_params = True  # type: ignore[attr-defined]
    return __init__


def signature_with_threshold_params(cls: type) -> inspect.Signature:
    """A system class's signature: its constructor's parameters, then the threshold ones
    (before ``**kwargs``)."""
    own = list(inspect.signature(cls.__init__).parameters.values())[1:]  # type: ignore[misc]
    extra = [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for k, (kind, default, _) in THRESHOLD_PARAMS.items()
    ]
    var_kw = [p for p in own if p.kind is inspect.Parameter.VAR_KEYWORD]
    return inspect.Signature([p for p in own if p not in var_kw] + extra + var_kw)
