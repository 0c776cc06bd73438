"""`workflows.calibrate` from Python: a refit on normal clips, a threshold set by hand, both
recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stethoscope.errors import ConfigError
from stethoscope.systems.threshold import gamma_threshold
from stethoscope.workflows.calibrate import calibrate
from tests.workflows.conftest import CTX


def test_refit_and_set_are_recorded(models: Path, toy_root: Path, tmp_path: Path) -> None:
    model = shutil.copytree(models / "fan", tmp_path / "fan")
    done = calibrate(model, CTX, data=toy_root / "fan" / "train", percentile=0.8)
    assert done.scores is not None and done.threshold == pytest.approx(
        gamma_threshold(done.scores, 0.8)
    )
    by_hand = calibrate(model, None, threshold=1.5)
    assert by_hand.previous == pytest.approx(done.threshold) and by_hand.scores is None
    record = json.loads((model / "config.json").read_text())
    assert record["threshold"] == 1.5 and [c["method"] for c in record["run"]["calibrations"]] == [
        "gamma fit",
        "set by hand",
    ]


def test_fitting_and_setting_at_once_is_refused(models: Path) -> None:
    with pytest.raises(ConfigError, match="give one of them"):
        calibrate(models / "fan", CTX, threshold=1.0, percentile=0.5)
