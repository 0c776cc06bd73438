"""Audio loading: bad files give `AudioError`s naming the file and the problem; resampling and
channel selection are right. The feature pipeline's in-memory decoder must agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.data.audio import load_audio
from stethoscope.data.clip import Clip
from stethoscope.errors import AudioError, ConfigError
from stethoscope.features.extract import FeatureRequest, iter_decoded
from tests.conftest import write_wav


def _decoded(clip: Clip) -> np.ndarray:
    """The feature pipeline's waveform of one clip (`iter_decoded`, the path every system reads)."""
    return next(iter_decoded([clip], FeatureRequest(wave=True), progress=False)).waves[0]


def _loaders(path: Path, channel: int | None = 0) -> list:
    """The two public ways a file is decoded: `load_audio` and the feature pipeline's
    `iter_decoded`."""
    return [
        lambda: load_audio(path, channel=channel),
        lambda: _decoded(Clip(path, "m", channel=channel or 0)),
    ]


def _noise(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    wave = np.random.default_rng(seed).uniform(-0.3, 0.3, (n, channels)).astype(np.float32)
    return wave[:, 0] if channels == 1 else wave


@pytest.mark.parametrize(
    "name, make, problem",
    [
        ("empty.wav", lambda p: p.write_bytes(b""), "empty file"),
        (
            "text.wav",
            lambda p: p.write_text("this is not audio\n" * 20),
            "not a readable audio file",
        ),
        (
            "zeros.wav",
            lambda p: write_wav(p, np.zeros(1600, np.float32), subtype="PCM_16"),
            "all zeros",
        ),
        (
            "nan.wav",
            lambda p: write_wav(p, np.full(1600, np.nan, np.float32), subtype="FLOAT"),
            "NaN",
        ),
        (
            "inf.wav",
            lambda p: write_wav(p, np.r_[_noise(1599), np.inf].astype(np.float32), subtype="FLOAT"),
            "infinite",
        ),
    ],
)
def test_bad_files_name_file_and_problem(tmp_path: Path, name: str, make, problem: str) -> None:
    path = tmp_path / name
    make(path)
    for load in _loaders(path):
        with pytest.raises(AudioError, match=problem) as err:
            load()
        assert name in str(err.value)


def test_truncated_wav(tmp_path: Path) -> None:
    full = write_wav(tmp_path / "full.wav", _noise(16_000), subtype="PCM_16")
    raw = full.read_bytes()
    assert len(load_audio(full)) == 16_000
    for cut in (30, 44, len(raw) // 2, len(raw) - 1):
        path = tmp_path / f"cut{cut}.wav"
        path.write_bytes(raw[:cut])
        with pytest.raises(AudioError, match="truncated WAV") as err:
            load_audio(path)
        assert path.name in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"absent\.wav: file not found"):
        load_audio(tmp_path / "absent.wav")


def test_wrong_channel(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "stereo.wav", _noise(800, channels=2), subtype="PCM_16")
    for load in _loaders(path, channel=2):
        with pytest.raises(
            AudioError, match=r"stereo\.wav: channel 2 requested but the file has 2 channel"
        ):
            load()


def test_resampling_length_and_content(tmp_path: Path) -> None:
    sr = 44_100
    t = np.arange(sr) / sr  # 1 s of 1 kHz
    path = write_wav(
        tmp_path / "hi.flac", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), sr
    )
    for load in _loaders(path):
        wave = load()
        assert wave.dtype == np.float32 and len(wave) == 16_000
        peak_hz = np.argmax(np.abs(np.fft.rfft(wave))) * 16_000 / len(wave)
        assert peak_hz == pytest.approx(1000, abs=2)
        assert np.sqrt(np.mean(wave[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_stereo_channel_selection_and_mix(tmp_path: Path) -> None:
    left, right = _noise(1600, seed=1), _noise(1600, seed=2)
    path = write_wav(tmp_path / "lr.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, channel=0), left)
    np.testing.assert_array_equal(load_audio(path, channel=1), right)
    np.testing.assert_allclose(load_audio(path, channel=None), (left + right) / 2, atol=1e-7)
    np.testing.assert_array_equal(_decoded(Clip(path, "m", channel=1)), right)


BOMB_CHILD = """
import sys
from stethoscope.data.audio import load_audio
from stethoscope.errors import AudioError


def peak_kb():  # VmHWM: getrusage's ru_maxrss would carry the parent's peak over fork + exec
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


before = peak_kb()
try:
    load_audio(sys.argv[1])
except AudioError as err:
    print(err)
print("grew_kb", peak_kb() - before)
"""


def _constant_flac(
    path: Path, seconds: float, channels: int = 1, sample_rate: int = 16_000
) -> Path:
    """A FLAC of constant DC (about 1,300x smaller than its float32 decode), a minute at a time."""
    with sf.SoundFile(
        str(path), "w", sample_rate, channels, format="FLAC", subtype="PCM_16"
    ) as out:
        block = np.full((60 * sample_rate, channels), 0.25, np.float32)
        for _ in range(int(seconds // 60)):
            out.write(block)
    return path


@pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the peak RSS (VmHWM) from Linux's /proc"
)
def test_a_two_hour_flac_is_refused_from_its_header_without_decoding(tmp_path: Path) -> None:
    bomb = _constant_flac(tmp_path / "bomb.flac", 2 * 3600)  # 0.4 MB on disk, 460 MB as float32
    assert bomb.stat().st_size < 2**20
    done = subprocess.run(
        [sys.executable, "-c", BOMB_CHILD, str(bomb)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src")),
    )
    assert done.returncode == 0, done.stderr
    *message, grew = done.stdout.strip().splitlines()
    assert int(grew.split()[1]) < 50 * 1024  # peak RSS grew by under 50 MB: nothing was decoded
    assert message[0].startswith(
        f"{bomb}: 7200 s of audio (115200000 frames x 1 channel(s) at 16000 Hz) is over "
        f"the --max-seconds 600 limit; not decoded"
    )


def test_max_seconds_is_a_runtime_limit_and_a_lying_header_stops_at_it(tmp_path: Path) -> None:
    from stethoscope.data.audio import decode_checked
    from stethoscope.data.policy import AudioPolicy, screen

    path = _constant_flac(tmp_path / "two_min.flac", 120, channels=2)
    with pytest.raises(AudioError, match=r"120 s of audio .* over the --max-seconds 60 limit"):
        decode_checked(path.read_bytes(), path, policy=AudioPolicy(max_seconds=60))
    assert (
        len(decode_checked(path.read_bytes(), path, policy=AudioPolicy(max_seconds=121))[0])
        == 120 * 16_000
    )
    kept, _ = screen(
        [Clip(path, "m")], policy=AudioPolicy("skip", say=lambda m: None, max_seconds=60)
    )
    assert kept == []  # the header check of a set refuses it before anything is decoded
    raw = bytearray(path.read_bytes())  # STREAMINFO's 36-bit sample count zeroed: "length unknown"
    raw[18:26] = (int.from_bytes(raw[18:26], "big") & ~((1 << 36) - 1)).to_bytes(8, "big")
    with pytest.raises(
        AudioError,
        match=r"decodes to more than the --max-seconds 60 limit allows; decoding stopped",
    ):
        decode_checked(bytes(raw), path, policy=AudioPolicy(max_seconds=60))
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--max-seconds must be a positive number"):
            AudioPolicy(max_seconds=bad)
