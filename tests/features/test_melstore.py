"""`MelStore` and `FrameBank`: every frame once, in RAM or memory-mapped, with identical
contents."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stethoscope.data.clip import Clip
from stethoscope.errors import AudioError
from stethoscope.features.extract import FeatureRequest, FrameBank, MelStore, logmels
from stethoscope.features.logmel import LogMelParams
from stethoscope.features.spill import BUDGET_ENV

REQUEST = FeatureRequest(logmel=LogMelParams(n_mels=32), wave=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(3)
    out = []
    for i, seconds in enumerate([1.0, 0.6, 1.3, 0.8, 1.1]):
        path = root / f"c{i}.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
        out.append(Clip(path=path, machine="m"))
    return out


def test_store_holds_each_clip_once_and_calls_back_per_chunk(clips: list[Clip]) -> None:
    ref = logmels(clips, REQUEST.logmel, cache_dir=None, progress=False)
    store, sizes = MelStore.from_clips(
        clips, REQUEST, None, False, each=lambda part: len(part.waves)
    )
    assert not store.spilled and len(store) == len(clips) and sum(sizes) == len(clips)
    assert store.array.shape == (sum(m.shape[1] for m in ref), 32)
    for i, mel in enumerate(ref):
        np.testing.assert_array_equal(store.mel(i), mel)
        assert np.shares_memory(store.mel(i), store.array)  # a view, not a copy


def test_spilled_store_and_bank_equal_the_ram_ones(
    clips: list[Clip], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_ram = FrameBank.from_clips(clips, REQUEST.logmel, 5, cache_dir=None, progress=False)
    monkeypatch.setenv(BUDGET_ENV, "0")
    spilled = FrameBank.from_clips(clips, REQUEST.logmel, 5, cache_dir=tmp_path, progress=False)
    assert spilled.store.spilled and not in_ram.store.spilled
    assert torch.equal(spilled.frames, in_ram.frames) and torch.equal(spilled.starts, in_ram.starts)
    idx = torch.tensor([0, 7, len(in_ram) - 1])
    assert torch.equal(spilled.vectors(idx), in_ram.vectors(idx))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "logmel",
        "wavestats",
    ]  # the cache's; the spill file has no name


def test_bank_refuses_clips_shorter_than_a_vector(clips: list[Clip]) -> None:
    with pytest.raises(
        AudioError, match=re.escape("c0.wav: too short")
    ):  # the audio policy names the file
        FrameBank.from_clips(clips, REQUEST.logmel, 500, cache_dir=None, progress=False)
