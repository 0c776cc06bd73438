"""Paired bootstrap confidence intervals of AUC differences between systems benchmarked on the
same folds (``stethoscope bench --system a,b,c``).

On sets of 10-20 clips one swapped pair of clips moves an AUC by 0.06, so a difference of
mean AUCs means little without its spread. Each bootstrap replicate resamples, within every
fold of every set, the fold's test normals and its anomalies with replacement (separately, so
both classes stay present), and recomputes every system's AUC on the *same* resampled clips:
the systems are compared clip for clip (paired), which removes the clips' shared difficulty
from the difference. A set's AUC is the mean over its folds, the mean AUC the mean over sets,
exactly as `bench` reports them. The interval is the percentile interval of the replicated
differences; a difference whose interval contains 0 is *within noise*.

Anomalies are tested in every fold, so the folds of a set are not independent samples; the
resampling treats them as if they were, which is the usual approximation for K-fold results.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

import numpy as np

from ..errors import StethoscopeError


def _auc(normal: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """AUC (ties count half) of the last axes' normal vs anomalous scores, batched over the
    first."""
    diff = anomalous[..., :, None] - normal[..., None, :]
    return (diff > 0).mean(axis=(-2, -1)) + 0.5 * (diff == 0).mean(axis=(-2, -1))


def _resampled_aucs(
    normal: np.ndarray,
    anomalous: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
    chunk: int = 100,
) -> np.ndarray:
    """(n_boot, systems) AUCs of resampled clips, the same clips for every system; in chunks of
    replicates so that memory stays bounded on large folds."""
    out = np.empty((n_boot, normal.shape[0]))
    for start in range(0, n_boot, chunk):
        n = min(chunk, n_boot - start)
        ni = rng.integers(0, normal.shape[1], size=(n, normal.shape[1]))
        ai = rng.integers(0, anomalous.shape[1], size=(n, anomalous.shape[1]))
        out[start : start + n] = _auc(
            np.transpose(normal[:, ni], (1, 0, 2)), np.transpose(anomalous[:, ai], (1, 0, 2))
        )
    return out


def _fold_table(reports: Mapping[str, Mapping[str, Any]], set_name: str) -> list[dict[str, Any]]:
    """Per fold: labels and every system's scores of the same test clips (NaN-free in all)."""
    systems = list(reports)
    per_system = [reports[s]["sets"][set_name]["folds"] for s in systems]
    if len({len(f) for f in per_system}) != 1:
        raise StethoscopeError(
            f"set {set_name!r}: the systems were benchmarked on different numbers of folds"
        )
    table = []
    for k, folds in enumerate(zip(*per_system, strict=True)):
        if any("scores" not in f for f in folds):
            raise StethoscopeError(
                f"set {set_name!r} fold {k}: no per-clip scores recorded (rerun `bench`)"
            )
        clips = [f.get("clips") for f in folds]
        if any(c != clips[0] for c in clips):
            raise StethoscopeError(
                f"set {set_name!r} fold {k}: the systems scored different test "
                "clips; benchmark them with the same data, folds and seed"
            )
        labels = np.asarray(folds[0]["labels"])
        scores = np.asarray([f["scores"] for f in folds], dtype=np.float64)  # (systems, clips)
        keep = np.isfinite(scores).all(axis=0)
        table.append({"labels": labels[keep], "scores": scores[:, keep]})
    return table


def _add_set_aucs(
    reports: Mapping[str, Mapping[str, Any]],
    name: str,
    observed: np.ndarray,
    replicas: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Add set ``name``'s fold-mean AUC per system to ``observed`` (systems,) and its bootstrap
    replicas to ``replicas`` (n_boot, systems), in place."""
    folds = _fold_table(reports, name)
    for fold in folds:
        normal, anomalous = (
            fold["scores"][:, fold["labels"] == 0],
            fold["scores"][:, fold["labels"] == 1],
        )
        if normal.shape[1] == 0 or anomalous.shape[1] == 0:
            raise StethoscopeError(
                f"set {name!r}: a fold has no scored normal or no scored anomalous clip"
            )
        observed += _auc(normal, anomalous) / len(folds)
        replicas += _resampled_aucs(normal, anomalous, len(replicas), rng) / len(folds)


def _interval(d_obs: float, d_rep: np.ndarray, tail: float) -> dict[str, Any]:
    """A difference and its percentile interval (``tail`` percent cut off at each end)."""
    low, high = np.percentile(d_rep, [tail, 100 - tail])
    return {
        "diff": float(d_obs),
        "low": float(low),
        "high": float(high),
        "within_noise": bool(low <= 0 <= high),
    }


def paired_bootstrap(
    reports: Mapping[str, Mapping[str, Any]], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Per pair of systems: the difference of mean AUCs (first minus second) over the sets all
    of them have, its paired bootstrap interval, and the same per set.

    ``reports`` maps a system's label to its ``bench.json`` content (with per-fold ``scores``,
    ``labels`` and ``clips``)."""
    systems = list(reports)
    if len(systems) < 2:
        raise StethoscopeError("a comparison needs at least two systems")
    sets = [s for s in reports[systems[0]]["sets"] if all(s in reports[o]["sets"] for o in systems)]
    if not sets:
        raise StethoscopeError("the systems share no benchmarked set")
    rng = np.random.default_rng(seed)
    observed = np.zeros((len(systems), len(sets)))
    replicas = np.zeros((n_boot, len(systems), len(sets)))
    for j, name in enumerate(sets):
        _add_set_aucs(reports, name, observed[:, j], replicas[:, :, j], rng)
    tail = 100 * (1 - level) / 2
    pairs = []
    for a, b in combinations(range(len(systems)), 2):
        per_set = {
            name: _interval(
                observed[a, j] - observed[b, j], replicas[:, a, j] - replicas[:, b, j], tail
            )
            for j, name in enumerate(sets)
        }
        overall = _interval(
            observed[a].mean() - observed[b].mean(),
            replicas[:, a].mean(axis=1) - replicas[:, b].mean(axis=1),
            tail,
        )
        pairs.append({"a": systems[a], "b": systems[b], **overall, "per_set": per_set})
    lo, hi = np.percentile(replicas.mean(axis=2), [tail, 100 - tail], axis=0)
    return {
        "method": "paired bootstrap, clips resampled within folds (normals and anomalies "
        "separately)",
        "n_boot": n_boot,
        "seed": seed,
        "level": level,
        "compared_sets": sets,
        "mean_auc": {
            s: {"auc": float(observed[i].mean()), "low": float(lo[i]), "high": float(hi[i])}
            for i, s in enumerate(systems)
        },
        "pairs": pairs,
    }
