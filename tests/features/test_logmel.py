import numpy as np
import pytest
import torch

from stethoscope.data.clip import Clip
from stethoscope.features.extract import (
    FeatureRequest,
    FrameBank,
    decode_waves,
    iter_decoded,
    logmels,
)
from stethoscope.features.logmel import EPS, LogMel, LogMelParams, mel_filterbank, stack_frames

librosa = pytest.importorskip("librosa")


def _librosa_logmel(y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=1024, hop_length=512, n_mels=128, power=2.0
    )
    return 10.0 * np.log10(np.maximum(mel, EPS))


def test_filterbank_equals_librosa():
    ours = mel_filterbank(16000, 1024, 128)
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=128)
    np.testing.assert_allclose(ours, ref, atol=1e-7)


def test_logmel_equals_librosa_on_synthetic_batch():
    rng = np.random.default_rng(0)
    t = np.arange(160_000) / 16000
    waves = np.stack(
        [
            0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t)),
            0.1 * rng.standard_normal(len(t)),
        ]
    ).astype(np.float32)
    ours = LogMel()(torch.from_numpy(waves)).numpy()
    assert ours.shape == (2, 128, 313)
    for w, o in zip(waves, ours, strict=True):
        np.testing.assert_allclose(o, _librosa_logmel(w), atol=2e-3)


def test_logmel_equals_librosa_on_real_clip(real_data):
    path = next((real_data / "dcase2020" / "fan" / "test").glob("*.flac"))
    y, _ = librosa.load(path, sr=16000)
    ours = logmels([Clip(path=path, machine="fan")], cache_dir=None, progress=False)[0]
    np.testing.assert_allclose(ours, _librosa_logmel(y), atol=2e-3)


def test_2020_log_floor_adds_eps():
    x = torch.zeros(1, 16000)
    x[0, 100] = 1e-7  # mel energies near eps, where + eps and max(., eps) differ
    add = LogMel(LogMelParams(log_floor="add"))(x)
    mx = LogMel(LogMelParams(log_floor="max"))(x)
    assert torch.isfinite(add).all() and torch.isfinite(mx).all()
    assert (add >= mx - 1e-4).all() and (add - mx).max() > 0.1


def _dcase_loop_stack(mel: np.ndarray, n_frames: int = 5) -> np.ndarray:
    """The official baseline's loop, written out: vector t-th block = frame i + t."""
    n_mels, n_vec = mel.shape[0], mel.shape[1] - n_frames + 1
    out = np.zeros((n_vec, n_mels * n_frames), dtype=np.float32)
    for t in range(n_frames):
        out[:, n_mels * t : n_mels * (t + 1)] = mel[:, t : t + n_vec].T
    return out


def test_stack_frames_and_frame_bank_follow_dcase_order():
    rng = np.random.default_rng(1)
    mels = [
        rng.standard_normal((128, 20)).astype(np.float32),
        rng.standard_normal((128, 9)).astype(np.float32),
    ]
    bank = FrameBank(mels, 5)
    assert len(bank) == 16 + 5 and bank.dim == 640
    for i, mel in enumerate(mels):
        expected = _dcase_loop_stack(mel)
        np.testing.assert_array_equal(stack_frames(mel).numpy(), expected)
        own = torch.nonzero(bank.clip_index == i).flatten()  # clip i's vectors, in order
        np.testing.assert_array_equal(bank.vectors(own).numpy(), expected)


def test_cache_returns_same_features_and_is_keyed_by_content(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(2)
    a = tmp_path / "a.wav"
    sf.write(a, 0.1 * rng.standard_normal(32000), 16000)
    clip = Clip(path=a, machine="m")
    first = logmels([clip], cache_dir=tmp_path / "cache", progress=False)[0]
    assert list((tmp_path / "cache").rglob("*.npy"))
    again = logmels([clip], cache_dir=tmp_path / "cache", progress=False)[0]
    np.testing.assert_array_equal(first, again)
    sf.write(a, 0.5 * rng.standard_normal(32000), 16000)  # same path, new content -> new features
    changed = logmels([clip], cache_dir=tmp_path / "cache", progress=False)[0]
    assert not np.allclose(first, changed)


def test_resampled_input_gives_313_frames(tmp_path):
    import soundfile as sf

    path = tmp_path / "x.wav"
    sf.write(path, 0.1 * np.random.default_rng(3).standard_normal(441000), 44100)
    mel = logmels([Clip(path=path, machine="m")], cache_dir=None, progress=False)[0]
    assert mel.shape == (128, 313)


def test_frame_bank_from_clips_preallocates_and_matches_list_path(tmp_path):
    import soundfile as sf

    rng = np.random.default_rng(4)
    clips = []
    for i, (sr, seconds) in enumerate([(16000, 2.0), (44100, 1.37), (16000, 0.9), (22050, 3.01)]):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(sr * seconds)), sr)
        clips.append(Clip(path=path, machine="m"))
    params = LogMelParams()
    direct = FrameBank.from_clips(clips, params, 5, cache_dir=None, progress=False)
    listed = FrameBank(logmels(clips, params, cache_dir=None, progress=False), 5)
    assert torch.equal(direct.frames, listed.frames) and torch.equal(direct.starts, listed.starts)
    assert torch.equal(direct.clip_index, listed.clip_index)


def test_decoded_chunks_hold_what_was_requested(tmp_path):
    """One pass gives waveform and log-mel in input order, in chunks; a cache hit still
    decodes when the waveform is wanted; in-memory waveforms give the same log-mels."""
    import soundfile as sf

    rng = np.random.default_rng(5)
    clips = []
    for i in range(5):
        path = tmp_path / f"w{i}.wav"
        sf.write(path, 0.1 * rng.standard_normal(16000 + 800 * i), 16000)
        clips.append(Clip(path=path, machine="m"))
    request = FeatureRequest(logmel=LogMelParams(), wave=True)
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # no cache, cold cache, warm cache
        chunks = list(iter_decoded(clips, request, cache, progress=False, chunk=2))
        assert [len(c) for c in chunks] == [2, 2, 1]
        assert [c.path for part in chunks for c in part.clips] == [c.path for c in clips]
        waves = [w for part in chunks for w in part.waves]
        mels = [m for part in chunks for m in part.logmels]
        assert [len(w) for w in waves] == [16000 + 800 * i for i in range(5)]
        keys = [k for part in chunks for k in part.keys]
        assert all(keys) if cache else not any(keys)
        for mel, ref in zip(mels, logmels(clips, cache_dir=None, progress=False), strict=True):
            np.testing.assert_allclose(mel, ref, rtol=1e-6, atol=1e-4)
    in_memory = decode_waves(waves, 16000, request)
    assert in_memory.keys == [""] * 5 and len(in_memory.waves) == 5
    for mel, ref in zip(in_memory.logmels, mels, strict=True):
        np.testing.assert_allclose(mel, ref, rtol=1e-6, atol=1e-4)
    only_mel = next(
        iter_decoded(clips[:1], FeatureRequest(logmel=LogMelParams()), None, progress=False)
    )
    assert only_mel.waves is None and only_mel.logmels[0].shape == mels[0].shape
