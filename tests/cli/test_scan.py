"""``stethoscope scan``: layout and why, types/sections/domains/splits with counts, audio facts,
quality findings; ambiguous layouts are an error naming every candidate's --layout flag."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from stethoscope.cli import main
from tests.conftest import write_wav


def _noise(seconds: float, seed: int, sr: int = 16_000) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(
        np.float32
    )


def test_scan_of_a_toy_set(toy_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["scan", str(toy_root)]) == 0
    out = capsys.readouterr().out
    assert (
        f"{toy_root}: layout dcase2022: all 48 audio files fit its names and folders "
        "(dcase2021 fit too; dcase2022 is more specific)" in out
    )
    assert "48 clips, 2 machine type(s)" in out
    assert re.search(r"fan\s+section_00\s+source\s+train\s+normal\s+\d+", out)
    assert "sample rates: 16000 Hz (48)" in out and "channels: 1 (48)" in out
    assert "durations: min 4 s, median 4 s, max 4 s" in out
    assert "quality (header and sample checks): 0 file(s) flagged" in out


def test_scan_reports_every_finding_without_stopping(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # scan only reports: no skipped.csv in the current folder
    root = tmp_path / "valve"
    for i in range(4):
        write_wav(root / "normal" / f"normal_id_00_{i:08d}.wav", _noise(2, i))
    write_wav(root / "anomaly" / "anomaly_id_00_00000000.wav", _noise(2, 9) + 0.5)
    write_wav(root / "normal" / "normal_id_00_00000010.wav", _noise(0.01, 5))
    write_wav(root / "normal" / "normal_id_00_00000011.wav", _noise(2, 6, sr=1000), 1000)
    os.mkfifo(root / "normal" / "normal_id_00_00000012.wav")
    (root / "normal" / "._normal_id_00_00000000.wav").write_bytes(b"junk")
    assert main(["scan", str(root)]) == 0
    captured = capsys.readouterr()
    assert f"{root}: layout folder: all 7 audio files fit its names and folders" in captured.out
    assert "sample rates: 16000 Hz (6), 1000 Hz (1)" in captured.out
    assert "quality (header and sample checks): 4 file(s) flagged" in captured.out
    for kind in ("a named pipe", "too short", "sample rate 1000 Hz is under 8000 Hz", "DC offset"):
        assert re.search(rf"  {re.escape(kind)}\s+1\n", captured.out), kind
    assert "normal_id_00_00000012.wav: a named pipe (FIFO)" in captured.err
    assert "._normal" not in captured.out + captured.err and not (tmp_path / "skipped.csv").exists()
    assert main(["scan", str(root), "--on-bad-audio", "error"]) == 2
    assert "error: " in capsys.readouterr().err


def test_scan_of_a_mixed_root_lists_candidates(
    real_data: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["scan", str(real_data)]) == 2
    err = capsys.readouterr().err
    assert (
        "no single layout fits every audio file (mimii fits 48 of 176, dcase2020 fits 128 of 176)"
        in err
    )
    assert "--layout mimii or --layout dcase2020" in err
    assert main(["scan", str(real_data / "dcase2020"), "--headers-only"]) == 0
    out = capsys.readouterr().out
    assert "layout dcase2020: all 128 audio files" in out and "formats: FLAC/PCM_16 (128)" in out
    assert "durations: min 10 s, median 10 s, max 11 s" in out and "0 file(s) flagged" in out
