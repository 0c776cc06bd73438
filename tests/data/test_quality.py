"""Findings about one file: entries refused without being opened, header facts, sample checks.
Real files of every kind are written with soundfile, numpy and os."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.data.quality import (
    AUDIO_SUFFIXES,
    duration_problem,
    entry_problem,
    read_header,
)
from stethoscope.data.samples import WaveStats
from tests.conftest import write_wav

SR = 16_000


def _noise(seconds: float = 1.0, level: float = 0.05, sr: int = SR, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(
        np.float32
    )


def _reasons(wave: np.ndarray, min_seconds: float = 0.0) -> str:
    return "; ".join(p.reason for p in WaveStats.of(wave, SR).problems(min_seconds))


def _needs(fmt: str) -> None:
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.mkdir(), "a folder, not an audio file"),
        (lambda p: os.mkfifo(p), r"a named pipe \(FIFO\)"),
        (lambda p: os.symlink(p.parent / "absent.wav", p), "a broken symbolic link"),
        (lambda p: os.symlink(p, p), "a symbolic link that cannot be followed"),
        (lambda p: p.write_bytes(b""), "empty file"),
    ],
)
def test_entries_that_are_not_regular_files_are_refused_unopened(
    tmp_path: Path, make, problem: str
) -> None:
    path = tmp_path / "x.wav"
    make(path)
    found = entry_problem(
        path
    )  # a FIFO would block an open(): returning at all shows it was not opened
    assert found is not None and found.unreadable
    assert __import__("re").search(problem, found.reason)
    header, problems = read_header(path)
    assert header is None and problems == [found]


def test_symlink_to_a_real_file_is_fine(tmp_path: Path) -> None:
    real = write_wav(tmp_path / "real.wav", _noise())
    os.symlink(real, tmp_path / "link.wav")
    assert entry_problem(tmp_path / "link.wav") is None


@pytest.mark.parametrize(
    "fmt, suffix, subtype",
    [
        ("MP3", ".mp3", None),
        ("OGG", ".ogg", "VORBIS"),
        ("OGG", ".opus", "OPUS"),
        ("AIFF", ".aiff", "PCM_16"),
    ],
)
def test_compressed_formats_decode_and_renamed_content_is_named(
    tmp_path: Path, fmt: str, suffix: str, subtype: str | None
) -> None:
    _needs(fmt)
    rate = 48_000 if subtype == "OPUS" else SR
    right = tmp_path / f"x{suffix}"
    sf.write(right, _noise(sr=rate), rate, format=fmt, subtype=subtype)
    header, problems = read_header(right)
    assert (
        suffix in AUDIO_SUFFIXES and header is not None and header.format == fmt and problems == []
    )
    renamed = right.rename(tmp_path / "x.wav")
    header, problems = read_header(renamed)
    assert header is not None and [p.reason for p in problems] == [
        f"the content is {fmt} ({header.subtype}), not WAV as its name says"
    ]
    assert not problems[0].unreadable  # it decodes: a warning, not an error


def test_header_findings(tmp_path: Path) -> None:
    low = write_wav(tmp_path / "low.wav", _noise(sr=1000), 1000)
    _, problems = read_header(low)
    assert [p.reason for p in problems] == [
        "sample rate 1000 Hz is under 8000 Hz (nothing above 500 Hz was recorded)"
    ]
    riff = tmp_path / "riff.wav"  # a RIFF header, then random bytes
    riff.write_bytes(
        b"RIFF" + (4000).to_bytes(4, "little") + b"WAVE" + np.random.default_rng(0).bytes(4000)
    )
    header, problems = read_header(riff)
    assert (
        header is None
        and problems[0].unreadable
        and "not a readable audio file" in problems[0].reason
    )
    full = write_wav(tmp_path / "full.wav", _noise(), subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:20_000])
    _, problems = read_header(cut)
    assert problems[0].unreadable and problems[0].reason.startswith(
        "truncated WAV: data chunk declares 32000 bytes"
    )


@pytest.mark.parametrize(
    "wave, expected",
    [
        (
            np.full(16_000, 0.5, np.float32),
            ["mostly constant: 100% of samples", "DC offset: mean sample value 0.5"],
        ),
        (
            np.random.default_rng(0).integers(-1, 2, 16_000).astype(np.float32) / 32768,
            ["near silence: level -9"],
        ),
        (_noise(level=0.3) * 100, ["samples exceed full scale: peak 1"]),
        (np.clip(_noise(level=0.5), -1, 1), ["clipped: 4.", "full-scale white noise"]),
        (
            np.random.default_rng(1).uniform(-1, 1, 16_000).astype(np.float32),
            ["full-scale white noise: level -4.8"],
        ),
        (_noise() + 0.05, ["DC offset: mean sample value 0.05"]),
    ],
)
def test_sample_checks_name_what_is_wrong(wave: np.ndarray, expected: list[str]) -> None:
    problems = WaveStats.of(wave, SR).problems()
    assert len(problems) == len(expected) and not any(p.unreadable for p in problems)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.reason.startswith(start), problem.reason


def test_unreadable_samples_and_short_clips() -> None:
    assert _reasons(np.zeros(16_000, np.float32)) == "audio is all zeros (silent)"
    assert (
        _reasons(np.r_[_noise(), np.nan].astype(np.float32))
        == "audio contains NaN or infinite samples"
    )
    for samples in (1, 160, 1600):  # 1 sample, 0.01 s, 0.1 s
        problems = WaveStats.of(_noise(samples / SR), SR).problems(min_seconds=0.128)
        assert problems[0].unreadable and problems[0].reason.startswith(
            f"too short: {samples / SR:.4g} s of audio"
        )


def test_real_recordings_raise_no_finding(real_data: Path) -> None:
    files = sorted(real_data.rglob("*.flac"))[:40]
    for path in files:
        wave, sr = sf.read(path, dtype="float32")
        assert WaveStats.of(wave, sr).problems(min_seconds=0.128) == [], path
        assert read_header(path)[1] == [], path


def test_duration_far_from_median() -> None:
    assert duration_problem(10.0, 10.0) is None and duration_problem(29.0, 10.0) is None
    assert "0.5 s is far from the set's median 10 s" in duration_problem(0.5, 10.0).reason
    assert "600 s" in duration_problem(600.0, 10.0).reason


def test_stats_round_trip_through_an_array() -> None:
    stats = WaveStats.of(_noise(), SR)
    again = WaveStats.from_array(stats.as_array())
    assert again.samples == stats.samples and again.sample_rate == SR and again.finite
    assert again.ac_rms == pytest.approx(stats.ac_rms, rel=1e-12) and again.lag1 == pytest.approx(
        stats.lag1
    )
