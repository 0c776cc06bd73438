"""``train --engine ray``: one Ray task per machine type, models and run.json as the local
engine's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.cli import main
from stethoscope.data import scan
from stethoscope.engine import RunContext
from stethoscope.systems.base import load_system
from tests.scale.conftest import TINY

pytest.importorskip(
    "ray", reason="Ray is the optional extra stethoscope[ray] (CI installs it with .[dev])"
)


def test_models_equal_the_local_engines(
    ray_local, fleet_data: Path, fleet_models: Path, tmp_path: Path
) -> None:
    """Same seed, clips, code and one torch thread: the fits run the same float operations in
    another process, so the scores agree to 1e-6 relative (bit-equal here; the tolerance allows
    for a worker whose CPU picks other BLAS kernels)."""
    out = tmp_path / "ray"
    assert (
        main(
            [
                "train",
                "--engine",
                "ray",
                "--data",
                str(fleet_data),
                "--system",
                "dcase_ae",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    run = json.loads((out / "run.json").read_text())
    assert {m: r["status"] for m, r in run["items"].items()} == {
        "fan": "trained",
        "gearbox": "trained",
    }
    assert run["meta"]["data"] == str(fleet_data) and not (out / ".checkpoints").exists()
    test = [c for c in scan(fleet_data) if c.split == "test"]
    for machine in ("fan", "gearbox"):
        ours, local = load_system(out / machine), load_system(fleet_models / machine)
        assert ours.run_["data_machine"] == machine and ours.get_params() == local.get_params()
        clips = [c for c in test if c.machine == machine]
        ctx = RunContext(progress=False)
        np.testing.assert_allclose(
            ours.score(clips, ctx), local.score(clips, ctx), rtol=1e-6, atol=1e-9
        )
        assert ours.threshold_ == pytest.approx(local.threshold_, rel=1e-6, abs=1e-9)


def test_a_failing_type_is_recorded_and_the_others_train(
    ray_local, fleet_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A type whose clips are all silent fails in its task (the audio policy refuses them when
    decoded); run.json says so, the other type is trained, the command exits 2 naming it."""
    data = tmp_path / "data"
    for wav in sorted((fleet_data / "fan" / "train").glob("*.wav")):
        (data / "fan" / "train").mkdir(parents=True, exist_ok=True)
        (data / "fan" / "train" / wav.name).write_bytes(wav.read_bytes())
        silent = data / "pump" / "train" / wav.name.replace("fan", "pump")
        silent.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(silent), np.zeros(32_000, np.float32), 16_000)
    out = tmp_path / "models"
    assert (
        main(
            [
                "train",
                "--engine",
                "ray",
                "--data",
                str(data),
                "--layout",
                "dcase2022",
                "--system",
                "dcase_ae",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "1 of 2 machine type(s) failed (pump: " in err and "Traceback" not in err
    items = json.loads((out / "run.json").read_text())["items"]
    assert items["fan"]["status"] == "trained" and (out / "fan" / "config.json").is_file()
    assert items["pump"]["status"].startswith("failed: ") and not (out / "pump").exists()
