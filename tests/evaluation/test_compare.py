"""Paired bootstrap comparison of bench reports: intervals that cover what they should."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.errors import StethoscopeError
from stethoscope.evaluation.compare import paired_bootstrap


def _report(scores_per_fold: list[np.ndarray], labels: list[int]) -> dict:
    folds = [
        {
            "clips": [f"c{i}" for i in range(len(labels))],
            "labels": labels,
            "scores": list(map(float, s)),
        }
        for s in scores_per_fold
    ]
    return {"sets": {"fan": {"folds": folds}}}


def test_a_clearly_better_system_is_outside_noise_and_a_copy_is_within() -> None:
    rng = np.random.default_rng(0)
    labels = [0] * 20 + [1] * 20
    base = [rng.normal(size=40) + 1.5 * np.array(labels) for _ in range(3)]
    worse = [b + rng.normal(scale=3.0, size=40) for b in base]
    out = paired_bootstrap(
        {
            "good": _report(base, labels),
            "noisy": _report(worse, labels),
            "copy": _report(base, labels),
        },
        n_boot=500,
    )
    pairs = {(p["a"], p["b"]): p for p in out["pairs"]}
    good_vs_noisy = pairs[("good", "noisy")]
    assert (
        good_vs_noisy["diff"] > 0 and not good_vs_noisy["within_noise"] and good_vs_noisy["low"] > 0
    )
    same = pairs[("good", "copy")]
    assert same["diff"] == 0 and same["low"] == 0 and same["high"] == 0 and same["within_noise"]
    m = out["mean_auc"]["good"]
    assert m["low"] <= m["auc"] <= m["high"]


def test_observed_auc_is_the_mean_over_folds_and_ties_count_half() -> None:
    labels = [0, 0, 1, 1]
    folds = [np.array([0.0, 1.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0, 1.0])]  # AUC 0.875 and 1.0
    out = paired_bootstrap(
        {"a": _report(folds, labels), "b": _report([-f for f in folds], labels)}, n_boot=10
    )
    assert out["mean_auc"]["a"]["auc"] == pytest.approx((0.875 + 1.0) / 2)
    assert out["pairs"][0]["diff"] == pytest.approx(0.9375 - 0.0625)


def test_different_test_clips_are_refused() -> None:
    labels = [0, 1]
    a, b = _report([np.array([0.0, 1.0])], labels), _report([np.array([0.0, 1.0])], labels)
    b["sets"]["fan"]["folds"][0]["clips"] = ["x", "y"]
    with pytest.raises(StethoscopeError, match="different test clips"):
        paired_bootstrap({"a": a, "b": b})
