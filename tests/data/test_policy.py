"""The audio policy: which entries are audio, what each --on-bad-audio mode does with each kind
of finding, skipped.csv, header screening of a set, and skips inside the one decoding pass."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np
import pytest

from stethoscope.data.clip import Clip
from stethoscope.data.policy import AudioPolicy, AudioWarning, audio_paths, list_audio, screen
from stethoscope.data.quality import Problem
from stethoscope.errors import AudioError, AudioSkipped, ConfigError, LayoutError
from tests.conftest import write_wav

BAD, ODD = Problem("unusable", unreadable=True), Problem("odd")


def _noise(seconds: float = 1.0, seed: int = 0, sr: int = 16_000) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(
        np.float32
    )


@pytest.mark.parametrize(
    "mode, on_bad, on_odd",
    [
        (None, "error", "warn"),
        ("error", "error", "error"),
        ("skip", "skip", "skip"),
        ("warn", "skip", "warn"),
    ],
)
def test_each_mode_decides_per_kind(mode: str | None, on_bad: str, on_odd: str) -> None:
    said: list[str] = []
    policy = AudioPolicy(mode, say=said.append)
    assert (policy.action(True), policy.action(False)) == (on_bad, on_odd)
    for problem, action in ((BAD, on_bad), (ODD, on_odd)):
        name = f"{problem.reason}.wav"
        if action == "error":
            with pytest.raises(AudioError, match=f"{name}: {problem.reason}"):
                policy.judge(name, [problem])
        else:
            assert policy.judge(name, [problem]) is (action == "warn")
            assert policy.is_skipped(name) is (action == "skip")
            assert said[-1].startswith(f"{name}: {problem.reason}")


def test_findings_are_said_once_and_counted_per_file(tmp_path: Path) -> None:
    said: list[str] = []
    policy = AudioPolicy("skip", say=said.append)
    for _ in range(3):  # e.g. a file decoded once per fold
        assert not policy.judge("a.wav", [ODD])
    assert not policy.judge("b.wav", [BAD, ODD])
    assert said == ["a.wav: odd (skipped)", "b.wav: unusable; odd (skipped)"]
    listed = policy.write_skipped(tmp_path / "out" / "skipped.csv")
    with open(listed, newline="") as handle:
        assert list(csv.reader(handle)) == [
            ["file", "reason"],
            ["a.wav", "odd"],
            ["b.wav", "unusable; odd"],
        ]
    assert policy.summary(listed) == (
        "audio checks: 2 file(s) skipped, 0 kept with warnings; "
        f"list in {listed} (--on-bad-audio skip)"
    )
    with pytest.raises(AudioSkipped, match=re.escape("b.wav")):
        policy.require("b.wav", [])  # once skipped, a file stays out


def test_nothing_found_writes_nothing(tmp_path: Path) -> None:
    policy = AudioPolicy()
    assert policy.judge("fine.wav", []) and policy.summary() is None
    assert (
        policy.write_skipped(tmp_path / "skipped.csv") is None
        and not (tmp_path / "skipped.csv").exists()
    )
    with pytest.raises(ConfigError, match="--on-bad-audio must be one of error, skip, warn"):
        AudioPolicy("ignore")


def test_library_default_warns_through_python_warnings() -> None:
    with pytest.warns(AudioWarning, match="odd.wav: odd"):
        assert AudioPolicy().judge("odd.wav", [ODD])


def test_list_audio_ignores_hidden_and_refuses_odd_entries_by_name(tmp_path: Path) -> None:
    good = [write_wav(tmp_path / "a" / "x.wav", _noise()), write_wav(tmp_path / "b.FLAC", _noise())]
    (tmp_path / "a" / "._x.wav").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    write_wav(tmp_path / ".hidden" / "y.wav", _noise())
    (tmp_path / "notes.txt").write_text("not audio")
    os.mkfifo(tmp_path / "pipe.wav")
    os.symlink(tmp_path / "gone.wav", tmp_path / "broken.wav")
    (tmp_path / "folder.wav").mkdir()
    write_wav(tmp_path / "folder.wav" / "inside.wav", _noise())
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    files, refused = list_audio(tmp_path)
    assert files == sorted(good)
    why = {p.name: problem.reason for p, problem in refused}
    assert set(why) == {"pipe.wav", "broken.wav", "folder.wav", "song.m4a"}
    assert why["folder.wav"].startswith("a folder") and why["song.m4a"].startswith(
        "M4A files cannot be decoded"
    )


def test_audio_paths_applies_the_policy_to_named_files(tmp_path: Path) -> None:
    write_wav(tmp_path / "d" / "ok.wav", _noise())
    (tmp_path / "d" / "._ok.wav").write_bytes(b"junk")
    os.mkfifo(tmp_path / "d" / "pipe.wav")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(AudioError, match=re.escape("pipe.wav: a named pipe")):
        audio_paths([tmp_path / "d"], AudioPolicy())
    policy = AudioPolicy("skip", say=lambda _: None)
    assert audio_paths([tmp_path / "d", tmp_path / "readme.txt"], policy) == [
        tmp_path / "d" / "ok.wav"
    ]
    assert policy.is_skipped(tmp_path / "readme.txt") and policy.is_skipped(
        tmp_path / "d" / "pipe.wav"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="holds no audio"):
        audio_paths([tmp_path / "empty"], policy)


def test_screen_flags_short_low_rate_and_odd_durations(tmp_path: Path) -> None:
    clips = [Clip(write_wav(tmp_path / f"n{i}.wav", _noise(10, seed=i)), "m") for i in range(4)]
    clips += [
        Clip(write_wav(tmp_path / "half.wav", _noise(0.5)), "m"),
        Clip(write_wav(tmp_path / "long.wav", _noise(40)), "m"),
        Clip(write_wav(tmp_path / "short.wav", _noise(0.1)), "m"),
        Clip(write_wav(tmp_path / "low.wav", _noise(10, sr=1000), 1000), "m"),
    ]
    said: list[str] = []
    kept, headers = screen(clips, min_seconds=0.128, policy=AudioPolicy("warn", say=said.append))
    assert [c.path.name for c in kept] == [
        "n0.wav",
        "n1.wav",
        "n2.wav",
        "n3.wav",
        "half.wav",
        "long.wav",
        "low.wav",
    ]
    assert len(headers) == 8
    text = "\n".join(said)
    assert "half.wav: duration 0.5 s is far from the set's median 10 s" in text
    assert "long.wav: duration 40 s" in text and "short.wav: too short: 0.1 s" in text
    assert "low.wav: sample rate 1000 Hz is under 8000 Hz" in text
    with pytest.raises(AudioError, match=re.escape("short.wav: too short")):
        screen(clips, min_seconds=0.128, policy=AudioPolicy())
