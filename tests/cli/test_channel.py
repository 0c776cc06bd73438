"""``--channel 0|1|mean``: the choice made at `train` is recorded in the model (config.json
``run.channel``) and is what `score` reads unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stethoscope.cli import main
from tests.conftest import write_wav

SR = 16_000
SYSTEM = [
    "--system",
    "embedding_knn",
    "--set",
    "encoder=random",
    "detector=gmm",
    "--threads",
    "1",
    "--quiet",
]


@pytest.fixture(scope="module")
def stereo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DCASE 2026-style two-channel clips: 6 training and 2 test clips of one machine type."""
    root = tmp_path_factory.mktemp("stereo")
    rng = np.random.default_rng(0)
    names = [f"train/section_00_source_train_normal_{i:04d}_mic_1.wav" for i in range(6)]
    names += [
        "test/section_00_source_test_normal_0000_mic_1.wav",
        "test/section_00_source_test_anomaly_0000_mic_1.wav",
    ]
    for name in names:
        write_wav(
            root / "fan" / name, (0.05 * rng.standard_normal((2 * SR, 2))).astype(np.float32), SR
        )
    write_wav(root.parent / "mono.wav", (0.05 * rng.standard_normal(2 * SR)).astype(np.float32), SR)
    return root


@pytest.mark.parametrize("channel, recorded", [("1", 1), ("mean", "mean")])
def test_channel_is_recorded_and_used_at_scoring(
    stereo_root: Path, tmp_path: Path, channel: str, recorded: object, capsys: pytest.CaptureFixture
) -> None:
    model = tmp_path / "model"
    assert (
        main(
            [
                "train",
                "--data",
                str(stereo_root),
                "--out",
                str(model),
                "--channel",
                channel,
                *SYSTEM,
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    assert json.loads((model / "config.json").read_text())["run"]["channel"] == recorded
    mono = stereo_root.parent / "mono.wav"
    code = main(["score", "--model", str(model), str(mono), "--threads", "1", "--no-cache"])
    err = capsys.readouterr().err
    if recorded == 1:  # the model's channel 1 is read by default: a mono file has none
        assert code == 2 and "channel 1 requested but the file has 1 channel(s)" in err
    else:
        assert code == 0
    assert (
        main(
            [
                "score",
                "--model",
                str(model),
                str(stereo_root / "fan" / "test"),
                "--channel",
                "0",
                "--threads",
                "1",
                "--no-cache",
            ]
        )
        == 0
    )
    warned = f"warning: the model was trained on channel {recorded}; reading channel 0 as asked"
    assert warned in capsys.readouterr().err


def test_a_bad_channel_is_refused(stereo_root: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["scan", str(stereo_root), "--channel", "left"])
    assert exit_.value.code == 2
    assert "channel must be a number (0, 1, ...) or 'mean', got 'left'" in capsys.readouterr().err
