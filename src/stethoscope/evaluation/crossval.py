"""Cross-validated benchmark for small labelled sets (protocol of ../shared/DESIGN.md).

Each set (a machine type, or a machine type + section) pools its labelled clips. Normals
are split into K folds (K = min(folds, n_normal)) with a fixed seed, stratified by domain
where every domain has at least K normals. Fold k trains on the other normals and tests on
fold-k normals plus all anomalies. Reported: mean AUC, pAUC, AUC-s, AUC-t over folds.
These rank clips, which no threshold changes, so each fold's system fits its threshold
in-sample rather than training ``threshold_folds`` more models for a cross-fitted one.
A joint system (`System.joint`) is benchmarked over every set at once (`cross_validate_joint`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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


def cross_validate(
    clips: Sequence[Clip],
    make_system: Callable[[], System],
    folds: int = 5,
    ctx: RunContext | None = None,
    score_modes: Sequence[str] | None = None,
    name: str = "set",
    own_threshold: bool = False,
) -> dict[str, Any]:
    """Run the protocol on one set; ``make_system()`` builds a fresh, unfitted system.

    Fold k trains with seed ``ctx.seed + k`` and checkpoints in ``<checkpoint_dir>/<name>/fold<k>``,
    so that no fold resumes another's training (fold k-1 trained on fold k's test normals).
    With ``score_modes`` (systems with a ``score_mode`` attribute, e.g. MSE and MAHALA of the
    AE), each fold is trained once and scored in every mode; the result is then a dict
    mode -> result.

    Each fold also records its false-alarm rate (test normals above the system's threshold) and
    detection rate (anomalies above it). The threshold is fitted in-sample, which is cheap and
    leaves the AUCs unchanged, unless ``own_threshold``: then each fold's system fits it as
    configured (cross-fitted by default), so that the rates are those a user would see.
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
    for k, test_idx in enumerate(
        progress(
            normal_folds(normals, folds, ctx.seed), desc="folds", unit="fold", enabled=ctx.progress
        )
    ):
        test_set = set(test_idx.tolist())
        train = [c for i, c in enumerate(normals) if i not in test_set]
        test = [normals[i] for i in test_idx] + anomalies
        fold_ctx = ctx.replace(seed=ctx.seed + k).for_run(name, f"fold{k}")
        system = make_system()
        if not own_threshold:
            system.threshold_fit = "in_sample"  # AUCs ignore the threshold: no extra fold models
        t0 = time.perf_counter()
        system.fit(train, ctx=fold_ctx)
        train_s.append(time.perf_counter() - t0)
        discard_checkpoint(fold_ctx.checkpoint_dir)
        _score_fold(system, test, fold_ctx, modes, len(train), fold_results, score_ms)
    has_domains = any(c.domain for c in clips)
    return _per_mode(
        {
            m: _summary(
                len(normals), len(anomalies), fold_results[m], train_s, score_ms[m], has_domains
            )
            for m in modes
        },
        score_modes,
    )


def _per_mode(
    results: dict[str | None, dict[str, Any]], score_modes: Sequence[str] | None
) -> dict[str, Any]:
    """mode -> result when score modes were asked for, else the one result."""
    if not score_modes:
        return results[None]
    return {m: results[m] for m in score_modes}


_Plan = dict[str, tuple[list[Clip], list[Clip], list[np.ndarray]]]


def _joint_plan(sets: Mapping[str, Sequence[Clip]], folds: int, seed: int) -> _Plan:
    """Each set's (normals, anomalies, its normals' test folds), as `cross_validate` folds them."""
    plan = {}
    for name, clips in sets.items():
        normals = [c for c in clips if c.label == 0]
        anomalies = [c for c in clips if c.label == 1]
        if not anomalies:
            raise ValueError(f"{name}: cross-validation needs at least one anomalous clip")
        plan[name] = (normals, anomalies, normal_folds(normals, folds, seed))
    return plan


def _joint_fold(
    plan: _Plan, k: int
) -> tuple[dict[str, list[Clip]], dict[str, tuple[list[Clip], int]]]:
    """Fold ``k``: the training normals grouped by machine type, and each set's (test clips,
    number of training normals) where it has a fold ``k``."""
    groups: dict[str, list[Clip]] = {}
    tests: dict[str, tuple[list[Clip], int]] = {}
    for name, (normals, anomalies, test_folds) in plan.items():
        held = set(test_folds[k].tolist()) if k < len(test_folds) else set()
        train = [c for i, c in enumerate(normals) if i not in held]
        groups.setdefault(normals[0].machine, []).extend(train)
        if held:
            tests[name] = ([normals[i] for i in test_folds[k]] + anomalies, len(train))
    return groups, tests


def cross_validate_joint(
    sets: Mapping[str, Sequence[Clip]],
    make_system: Callable[[], System],
    folds: int = 5,
    ctx: RunContext | None = None,
    score_modes: Sequence[str] | None = None,
) -> tuple[dict[str, Any], dict[str, System]]:
    """The protocol for a joint system (`System.joint`), over all ``sets`` at once.

    Each set keeps the folds `cross_validate` gives it (same seed). Fold k fits one joint model
    (`System.fit_joint`, seed ``ctx.seed + k``, checkpoints in ``<checkpoint_dir>/joint/fold<k>``)
    on the fold-k training normals of every set, grouped by machine type, and scores each
    set's fold-k test clips with its machine type's system. A set with fewer folds than another
    (fewer normals than ``folds``) trains on all its normals in its missing folds and is not
    tested there. ``train_seconds`` is the joint fit's time per fold, the same for every set.

    Returns (set -> result as `cross_validate` gives it, the last fold's systems per machine type).
    """
    ctx = ctx or RunContext()
    modes = list(score_modes) if score_modes else [None]
    plan = _joint_plan(sets, folds, ctx.seed)
    fold_results: dict[str, dict[str | None, list[dict]]] = {
        name: {m: [] for m in modes} for name in plan
    }
    score_ms: dict[str, dict[str | None, list[float]]] = {
        name: {m: [] for m in modes} for name in plan
    }
    train_s: list[float] = []
    systems: dict[str, System] = {}
    n_folds = max(len(test_folds) for _, _, test_folds in plan.values())
    for k in progress(range(n_folds), desc="joint folds", unit="fold", enabled=ctx.progress):
        groups, tests = _joint_fold(plan, k)
        fold_ctx = ctx.replace(seed=ctx.seed + k).for_run("joint", f"fold{k}")
        system = make_system()
        system.threshold_fit = "in_sample"  # AUCs ignore the threshold: no extra fold models
        t0 = time.perf_counter()
        systems = system.fit_joint(groups, ctx=fold_ctx)
        train_s.append(time.perf_counter() - t0)
        discard_checkpoint(fold_ctx.checkpoint_dir)
        for name, (test, n_train) in tests.items():
            _score_fold(
                systems[plan[name][0][0].machine],
                test,
                fold_ctx,
                modes,
                n_train,
                fold_results[name],
                score_ms[name],
            )
    out = {
        name: _joint_result(
            sets[name], normals, anomalies, fold_results[name], score_ms[name], train_s, score_modes
        )
        for name, (normals, anomalies, _) in plan.items()
    }
    return out, systems


def _joint_result(
    clips: Sequence[Clip],
    normals: list[Clip],
    anomalies: list[Clip],
    fold_results: dict[str | None, list[dict]],
    score_ms: dict[str | None, list[float]],
    train_s: list[float],
    score_modes: Sequence[str] | None,
) -> dict[str, Any]:
    """One set's result of the joint protocol, as `cross_validate` gives it."""
    has_domains = any(c.domain for c in clips)
    return _per_mode(
        {
            m: _summary(len(normals), len(anomalies), results, train_s, score_ms[m], has_domains)
            for m, results in fold_results.items()
        },
        score_modes,
    )


def _score_fold(
    system: System,
    test: Sequence[Clip],
    ctx: RunContext,
    modes: Sequence[str | None],
    n_train: int,
    fold_results: dict[str | None, list[dict]],
    score_ms: dict[str | None, list[float]],
) -> None:
    """Score one fold's test clips in every mode; append its metrics and scoring time."""
    for mode in modes:
        if mode is not None:
            # modes are given only for systems that have them (`frame_recon` and its kin)
            system.score_mode = mode  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        scores = system.score(test, ctx)
        score_ms[mode].append(1000 * (time.perf_counter() - t0) / len(test))
        kept = [i for i, s in enumerate(scores) if s == s]  # NaN: left out by the audio checks
        labels = np.array([test[i].label for i in kept])
        m = section_metrics(labels, scores[kept], [test[i].domain for i in kept])
        decided = system.decide(scores[kept])
        fold_results[mode].append(
            {
                "auc": m["auc"],
                "pauc": m["pauc"],
                "auc_source": m["auc_source"],
                "auc_target": m["auc_target"],
                "n_train": n_train,
                "n_test": len(test),
                "false_alarm": float(decided[labels == 0].mean()) if (labels == 0).any() else None,
                "detected": float(decided[labels == 1].mean()) if (labels == 1).any() else None,
                # per clip, for paired comparisons of systems
                # (`evaluation.compare`)
                "clips": [test[i].name for i in range(len(test))],
                "labels": [test[i].label for i in range(len(test))],
                "scores": [float(v) if v == v else None for v in scores],
            }
        )


def _summary(
    n_normal: int,
    n_anomaly: int,
    folds: list[dict],
    train_s: list[float],
    score_ms: list[float],
    has_domains: bool,
) -> dict[str, Any]:
    return {
        "n_normal": n_normal,
        "n_anomaly": n_anomaly,
        "auc": _mean([f["auc"] for f in folds]),
        "pauc": _mean([f["pauc"] for f in folds]),
        "auc_source": _mean([f["auc_source"] for f in folds]) if has_domains else None,
        "auc_target": _mean([f["auc_target"] for f in folds]) if has_domains else None,
        "auc_std": float(np.std([f["auc"] for f in folds])),
        "false_alarm": _mean([f["false_alarm"] for f in folds]),
        "detected": _mean([f["detected"] for f in folds]),
        "folds": folds,
        "train_seconds": float(np.mean(train_s)),
        "score_ms_per_clip": float(np.mean(score_ms)),
    }
