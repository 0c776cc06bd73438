"""`stethoscope calibrate`: refit a model's threshold on new normal clips (gamma fit at a
percentile) or set it by hand; config.json is rewritten with the calibration recorded, the
weights and files beside the model stay; errors exit 2 naming the flag."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stethoscope.cli import main
from stethoscope.data.clip import Clip
from stethoscope.data.layouts import scan
from stethoscope.systems import load_system
from stethoscope.systems.threshold import gamma_threshold
from tests.cli.conftest import RUNTIME

CACHE = ["--no-cache"]


@pytest.fixture
def model(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the session's trained fan model, with a file beside it (as the
    run.json of a single-type `train`, whose model sits in OUT)."""
    path = shutil.copytree(trained / "fan", tmp_path / "fan")
    (path / "run.json").write_text("{}")
    return path


@pytest.fixture(scope="module")
def normals(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain folder of new fan recordings (the toy set's normal test clips), in no layout."""
    folder = tmp_path_factory.mktemp("new-normals")
    for clip in scan(toy_root, machine="fan", split="test"):
        if clip.label == 0:
            shutil.copy(clip.path, folder / clip.path.name)
    return folder


def config(model: Path) -> dict:
    return json.loads((model / "config.json").read_text())


def test_refit_on_new_normals(model: Path, normals: Path, capsys: pytest.CaptureFixture) -> None:
    weights = (model / "weights.safetensors").read_bytes()
    old = config(model)["threshold"]
    assert main(["calibrate", "--model", str(model), "--data", str(normals), *RUNTIME, *CACHE]) == 0
    captured = capsys.readouterr()
    out = captured.out
    files = sorted(normals.iterdir())
    assert (
        f"matches no data layout; its {len(files)} recordings are all taken as normal"
        in captured.err
    )
    system = load_system(model)
    scores = system.score([Clip(path=p, machine="fan") for p in files])
    assert system.threshold_ == pytest.approx(gamma_threshold(scores, 0.9), rel=1e-9, abs=1e-9)
    assert (
        f"threshold: {old:.6g} -> {system.threshold_:.6g} "
        f"(gamma fit at percentile 0.9 of {len(files)}"
    ) in out
    new_alarms = int((scores > system.threshold_).sum())
    assert f"{new_alarms}/{len(files)} ({100 * new_alarms / len(files):.1f}%) with the new" in out
    record = config(model)["run"]["calibrations"][-1]
    assert record["data"] == str(normals.resolve()) and record["n_clips"] == len(files)
    assert (
        record["percentile"] == 0.9
        and record["method"] == "gamma fit"
        and record["time_utc"].endswith("Z")
    )
    assert record["previous_threshold"] == old and record["threshold"] == system.threshold_
    assert record["false_alarm_rate"]["new"] == pytest.approx(new_alarms / len(files))
    assert record["false_alarm_rate"]["previous"] == pytest.approx(float(np.mean(scores > old)))
    assert (model / "weights.safetensors").read_bytes() == weights  # only config.json is rewritten
    assert (model / "run.json").read_text() == "{}"
    assert config(model)["run"]["threshold"]["fit"] == "crossfit"  # the training record stays


def test_percentile_and_hand_set_thresholds_add_calibrations(
    model: Path, normals: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(
            [
                "calibrate",
                "--model",
                str(model),
                "--data",
                str(normals),
                "--percentile",
                "0.5",
                *RUNTIME,
                *CACHE,
            ]
        )
        == 0
    )
    median_fit = config(model)["threshold"]
    assert main(["calibrate", "--model", str(model), "--data", str(normals), *RUNTIME, *CACHE]) == 0
    assert config(model)["threshold"] > median_fit
    assert main(["calibrate", "--model", str(model), "--threshold", "12.5", *RUNTIME]) == 0
    assert "-> 12.5 (set by hand)" in capsys.readouterr().out
    cfg = config(model)
    assert cfg["threshold"] == 12.5 and load_system(model).threshold_ == 12.5
    calibrations = cfg["run"]["calibrations"]
    assert [c.get("percentile") for c in calibrations] == [0.5, 0.9, None]
    assert calibrations[-1]["method"] == "set by hand" and "n_clips" not in calibrations[-1]


def test_layout_root_uses_the_models_machine_and_leaves_anomalies_out(
    model: Path, toy_root: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(["calibrate", "--model", str(model), "--data", str(toy_root), *RUNTIME, *CACHE]) == 0
    )
    fan = scan(toy_root, machine="fan")
    n_anomalous = sum(c.label == 1 for c in fan)
    assert f"note: {n_anomalous} clips labelled anomalous are left out" in capsys.readouterr().err
    assert config(model)["run"]["calibrations"][-1]["n_clips"] == len(fan) - n_anomalous


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "needs --data NORMALS"),
        (["--threshold", "3", "--percentile", "0.5"], "give one of them"),
        (["--threshold", "nan"], "--threshold must be a finite number"),
        (["--data", "DATA", "--percentile", "1.5"], "--percentile must be in (0, 1)"),
    ],
)
def test_bad_calls_exit_2_naming_the_flag(
    model: Path, normals: Path, args: list, message: str, capsys: pytest.CaptureFixture
) -> None:
    before = (model / "config.json").read_text()
    args = [str(normals) if a == "DATA" else a for a in args]
    assert main(["calibrate", "--model", str(model), *args, *RUNTIME]) == 2
    assert message in capsys.readouterr().err
    assert (model / "config.json").read_text() == before


def test_no_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["calibrate", "--model", str(tmp_path), "--threshold", "1", *RUNTIME]) == 2
    assert "not a model directory" in capsys.readouterr().err
