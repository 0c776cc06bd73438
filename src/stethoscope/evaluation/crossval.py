"""Cross-validated benchmark for small labelled sets (protocol of ../shared/DESIGN.md).

Each set (a machine type, or a machine type + section) pools its labelled clips. Normals
are split into K folds (K = min(folds, n_normal)) with a fixed seed, stratified by domain
where every domain has at least K normals. Fold k trains on the other normals and tests on
fold-k normals plus all anomalies. Reported: mean AUC, pAUC, AUC-s, AUC-t over folds.
These rank clips, which no threshold changes, so each fold's system fits its threshold
in-sample rather than training ``threshold_folds`` more models for a cross-fitted one.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from ..data.clip import Clip
from ..engine import RunContext, discard_checkpoint
from ..progress import progress
from ..systems.base import System
from .metrics import section_metrics


def group_sets(clips: Sequence[Clip], by: str = "machine") -> dict[str, list[Clip]]:
    """Labelled clips grouped into benchmark sets: by ``machine`` or by ``section``."""
    if by not in ("machine", "section"):
        raise ValueError(f"group must be 'machine' or 'section', got {by!r}")
    sets: dict[str, list[Clip]] = {}
    for c in clips:
        if c.label is None:
            continue
        key = c.machine if by == "machine" else f"{c.machine}_{c.section_tag}"
        sets.setdefault(key, []).append(c)
    return dict(sorted(sets.items()))


def normal_folds(normals: Sequence[Clip], folds: int, seed: int) -> list[np.ndarray]:
    """Test-fold indices into ``normals``; stratified by domain when possible."""
    k = min(folds, len(normals))
    if k < 2:
        raise ValueError(f"need at least 2 normal clips for cross-validation, got {len(normals)}")
    domains = np.array([c.domain or "none" for c in normals])
    _, counts = np.unique(domains, return_counts=True)
    index = np.arange(len(normals))
    if len(counts) > 1 and counts.min() >= k:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [test for _, test in splitter.split(index, domains)]
    return [test for _, test in KFold(n_splits=k, shuffle=True, random_state=seed).split(index)]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def cross_validate(clips: Sequence[Clip], make_system: Callable[[], System], folds: int = 5,
                   ctx: RunContext | None = None, score_modes: Sequence[str] | None = None,
                   name: str = "set") -> dict[str, Any]:
    """Run the protocol on one set; ``make_system()`` builds a fresh, unfitted system.

    Fold k trains with seed ``ctx.seed + k`` and checkpoints in ``<checkpoint_dir>/<name>/fold<k>``,
    so that no fold resumes another's training (fold k-1 trained on fold k's test normals).
    With ``score_modes`` (systems with a ``score_mode`` attribute, e.g. MSE and MAHALA of the
    AE), each fold is trained once and scored in every mode; the result is then a dict
    mode -> result.
    """
    ctx = ctx or RunContext()
    normals = [c for c in clips if c.label == 0]
    anomalies = [c for c in clips if c.label == 1]
    if not anomalies:
        raise ValueError("cross-validation needs at least one anomalous clip")
    modes = list(score_modes) if score_modes else [None]
    fold_results: dict[str | None, list[dict]] = {m: [] for m in modes}
    score_ms: dict[str | None, list[float]] = {m: [] for m in modes}
    train_s = []
    for k, test_idx in enumerate(progress(normal_folds(normals, folds, ctx.seed), desc="folds", unit="fold",
                                          enabled=ctx.progress)):
        test_set = set(test_idx.tolist())
        train = [c for i, c in enumerate(normals) if i not in test_set]
        test = [normals[i] for i in test_idx] + anomalies
        fold_ctx = ctx.replace(seed=ctx.seed + k).for_run(name, f"fold{k}")
        system = make_system()
        system.threshold_fit = "in_sample"  # AUCs ignore the threshold: no extra fold models
        t0 = time.perf_counter()
        system.fit(train, ctx=fold_ctx)
        train_s.append(time.perf_counter() - t0)
        discard_checkpoint(fold_ctx.checkpoint_dir)
        for mode in modes:
            if mode is not None:
                system.score_mode = mode  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            scores = system.score(test, fold_ctx)
            score_ms[mode].append(1000 * (time.perf_counter() - t0) / len(test))
            kept = [i for i, s in enumerate(scores) if s == s]  # NaN: left out by the audio checks
            m = section_metrics([test[i].label for i in kept], scores[kept], [test[i].domain for i in kept])
            fold_results[mode].append({"auc": m["auc"], "pauc": m["pauc"], "auc_source": m["auc_source"],
                                       "auc_target": m["auc_target"], "n_train": len(train), "n_test": len(test)})
    has_domains = any(c.domain for c in clips)
    out = {m: _summary(len(normals), len(anomalies), fold_results[m], train_s, score_ms[m], has_domains)
           for m in modes}
    return out if score_modes else out[None]


def _summary(n_normal: int, n_anomaly: int, folds: list[dict], train_s: list[float], score_ms: list[float],
             has_domains: bool) -> dict[str, Any]:
    return {
        "n_normal": n_normal, "n_anomaly": n_anomaly,
        "auc": _mean([f["auc"] for f in folds]),
        "pauc": _mean([f["pauc"] for f in folds]),
        "auc_source": _mean([f["auc_source"] for f in folds]) if has_domains else None,
        "auc_target": _mean([f["auc_target"] for f in folds]) if has_domains else None,
        "auc_std": float(np.std([f["auc"] for f in folds])),
        "folds": folds,
        "train_seconds": float(np.mean(train_s)),
        "score_ms_per_clip": float(np.mean(score_ms)),
    }
