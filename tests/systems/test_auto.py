"""The auto system: candidates weighted equally or by pseudo AUC, the choice kept in the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.systems import get_system, load_system
from stethoscope.systems.auto import pseudo_weights
from tests.evaluation.test_pseudo import normal_clips

CTX = RunContext(progress=False)
TINY_AE = {"dcase_ae": {"epochs": 1, "batch_size": 64, "threshold_folds": 2}}


def test_pseudo_weights_rules() -> None:
    assert pseudo_weights([0.9, 0.7], "pseudo") == pytest.approx([0.4 / 0.6, 0.2 / 0.6])
    assert pseudo_weights([0.4, 0.5], "pseudo") == pytest.approx(
        [0.5, 0.5]
    )  # none above chance: equal
    assert pseudo_weights([0.6, 0.8, 0.8], "select") == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("weighting", ["equal", "pseudo", "select"])
def test_auto_fits_weights_and_round_trips(tmp_path: Path, weighting: str) -> None:
    clips = normal_clips(tmp_path)
    system = get_system(
        "auto",
        members=["mel_stats", "dcase_ae"],
        member_params=TINY_AE,
        weighting=weighting,
        threshold_folds=2,
    ).fit(clips[:7], ctx=CTX)
    assert sum(system.weights_) == pytest.approx(1.0 if weighting != "equal" else 2.0)
    if weighting == "equal":
        assert system.pseudo_ is None and system.weights_ == [1.0, 1.0]
    else:
        aucs = system.pseudo_["auc"]
        assert set(aucs) == {"mel_stats", "dcase_ae"} and system.run_["pseudo_auc"] == aucs
        assert system.weights_ == pytest.approx(
            pseudo_weights([aucs["mel_stats"], aucs["dcase_ae"]], weighting)
        )
    scores = system.score(clips[7:], CTX)
    parts = [
        (m.score(clips[7:], CTX) - n["mean"]) / n["std"]
        for m, n in zip(system.members_, system.norm_, strict=True)
    ]
    np.testing.assert_allclose(
        scores, np.average(parts, axis=0, weights=system.weights_), rtol=1e-9, atol=1e-9
    )
    system.save(tmp_path / "model")
    loaded = load_system(tmp_path / "model")
    assert loaded.weights_ == system.weights_
    np.testing.assert_allclose(loaded.score(clips[7:], CTX), scores, rtol=1e-6, atol=1e-9)


def test_auto_refuses_composites_and_joint_candidates() -> None:
    with pytest.raises(ConfigError, match="cannot be a member"):
        get_system("auto", members=["mel_stats", "ensemble"])
    with pytest.raises(ConfigError, match="joint"):
        get_system("auto", members=["mel_stats", "aux_classifier"])
    with pytest.raises(ConfigError, match="weighting"):
        get_system("auto", weighting="vote")
