"""Pseudo-anomaly validation on tiny generated clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.evaluation.pseudo import pseudo_validate
from stethoscope.systems import get_system

SR = 16_000
CTX = RunContext(progress=False)


def normal_clips(root: Path, n: int = 9) -> list[Clip]:
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    out = []
    for i in range(n):
        wave = 0.2 * np.sin(2 * np.pi * (120 + rng.normal(0, 1)) * t) + 0.02 * rng.standard_normal(
            len(t)
        )
        path = root / f"n{i}.wav"
        sf.write(path, wave.astype(np.float32), SR)
        out.append(Clip(path=path, machine="fan", split="train", label=0))
    return out


def test_mel_stats_separates_pseudo_anomalies_and_reports_each_kind(tmp_path: Path) -> None:
    res = pseudo_validate(lambda: get_system("mel_stats"), normal_clips(tmp_path), CTX, folds=3)
    assert res["auc"] > 0.8 and len(res["folds"]) == 3 and res["n_normal"] == 9
    assert set(res["per_kind"]) == {
        "tone",
        "harmonics",
        "clicks",
        "impacts",
        "am",
        "fm",
        "tilt",
        "band_noise",
        "time_stretch",
        "level",
    }
    assert res["per_kind"]["tone"] > 0.9 and res["per_kind"]["level"] > 0.9


def test_the_result_is_reproducible_and_needs_three_normals(tmp_path: Path) -> None:
    make = lambda: get_system("mel_stats", detector="knn")  # noqa: E731
    clips = normal_clips(tmp_path)
    first = pseudo_validate(make, clips, CTX, folds=3, kinds=["fm", "tilt"], severities=[1])
    assert pseudo_validate(make, clips, CTX, folds=3, kinds=["fm", "tilt"], severities=[1]) == first
    assert set(first["per_kind"]) == {"fm", "tilt"} and first["severities"] == [1]
    with pytest.raises(ConfigError, match="at least 3"):
        pseudo_validate(make, clips[:2], CTX)
