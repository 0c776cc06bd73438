"""The one decoding pass under the audio policy: sample checks run on the decoded waveform,
skipped clips leave every chunk (with the positions of the rest), cache hits are checked too."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from stethoscope.data.clip import Clip
from stethoscope.data.policy import AudioPolicy
from stethoscope.errors import AudioError
from stethoscope.features.extract import FeatureRequest, FrameBank, decoded_logmels, iter_decoded
from stethoscope.features.logmel import LogMelParams
from tests.conftest import write_wav


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(int(seconds * 16_000))).astype(
        np.float32
    )


def _same(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


@pytest.fixture
def mixed(tmp_path: Path) -> list[Clip]:
    """Five clips: good, DC offset (suspicious), good, all zeros (unreadable), good."""
    waves = [
        _noise(1, 0),
        _noise(1, 1) + 0.5,
        _noise(1, 2),
        np.zeros(16_000, np.float32),
        _noise(1, 3),
    ]
    return [
        Clip(write_wav(tmp_path / f"c{i}.wav", w), "m", domain=("source", "target")[i % 2])
        for i, w in enumerate(waves)
    ]


def test_skip_drops_clips_and_says_where_the_rest_came_from(mixed: list[Clip]) -> None:
    policy = AudioPolicy("skip", say=lambda _: None)
    with policy.active():
        parts = list(
            iter_decoded(
                mixed, FeatureRequest(logmel=LogMelParams(), wave=True), chunk=2, progress=False
            )
        )
    assert [p.index for p in parts] == [[0], [2], [4]]
    assert [c.path.name for p in parts for c in p.clips] == ["c0.wav", "c2.wav", "c4.wav"]
    assert all(len(p.waves) == len(p.logmels) == len(p.keys) == 1 for p in parts)
    assert {Path(f.path).name for f in policy.findings} == {"c1.wav", "c3.wav"}


def test_default_warns_on_suspicious_and_stops_on_unreadable(mixed: list[Clip]) -> None:
    with (
        pytest.warns(UserWarning, match="c1.wav: DC offset"),
        pytest.raises(AudioError, match=re.escape("c3.wav: audio is all")),
    ):
        list(iter_decoded(mixed, FeatureRequest(wave=True), progress=False))


def test_warn_keeps_suspicious_and_leaves_unreadable_out(mixed: list[Clip]) -> None:
    with AudioPolicy("warn", say=lambda _: None).active():
        kept, mels = decoded_logmels(mixed, progress=False)
    assert [c.path.name for c in kept] == ["c0.wav", "c1.wav", "c2.wav", "c4.wav"] and len(
        mels
    ) == 4


def test_frame_bank_holds_only_kept_clips_in_order(mixed: list[Clip]) -> None:
    params = LogMelParams()
    with AudioPolicy("skip", say=lambda _: None).active():
        bank = FrameBank.from_clips(mixed, params, n_frames=5, progress=False)
        _, mels = decoded_logmels([mixed[0], mixed[2], mixed[4]], params, progress=False)
    assert [c.path.name for c in bank.clips] == ["c0.wav", "c2.wav", "c4.wav"]
    expected = FrameBank(mels, 5)
    assert (
        _same(bank.frames, expected.frames)
        and bank.clip_index.tolist() == expected.clip_index.tolist()
    )


def test_short_clip_is_named_with_the_model_minimum(tmp_path: Path) -> None:
    short = Clip(write_wav(tmp_path / "short.wav", _noise(0.1, 0)), "m")
    request = FeatureRequest(logmel=LogMelParams(), min_frames=5)
    assert request.min_seconds == pytest.approx(0.128)
    with pytest.raises(AudioError, match=r"short.wav: too short: 0.1 s of audio, at least 0.128 s"):
        list(iter_decoded([short], request, progress=False))


def test_cache_hit_is_checked_without_decoding(tmp_path: Path) -> None:
    """A cached log-mel is used only after the file's cached sample statistics pass the policy."""
    clip = Clip(write_wav(tmp_path / "dc.wav", _noise(1, 0) + 0.5), "m")
    request, cache = FeatureRequest(logmel=LogMelParams()), tmp_path / "cache"
    with AudioPolicy("warn", say=lambda _: None).active():
        first = next(iter_decoded([clip], request, cache, progress=False)).logmels[0]
    said: list[str] = []
    with AudioPolicy("warn", say=said.append).active():
        again = next(iter_decoded([clip], request, cache, progress=False)).logmels[0]
    np.testing.assert_array_equal(first, again)
    assert said == [f"{clip.path}: DC offset: mean sample value 0.5"]
    with AudioPolicy("skip", say=lambda _: None).active():
        assert list(iter_decoded([clip], request, cache, progress=False)) == []
