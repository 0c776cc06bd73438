"""Encoder front ends and models against the shared fixtures; registry; weight finder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from stethoscope.encoders import (
    embed_clips,
    encoder_tag,
    fitted_encoder_on,
    get_encoder,
    list_encoders,
    restore_encoder_tag,
    saved_encoder_tag,
)
from stethoscope.encoders import weights as W
from stethoscope.encoders.efficientat import MN04_SHA256
from stethoscope.encoders.fbank import FbankParams, KaldiFbank
from stethoscope.errors import CheckpointError, ConfigError

SHARED = Path(os.environ.get("STETHOSCOPE_SHARED", Path(__file__).resolve().parents[3] / "shared"))
FIXTURE = SHARED / "fixtures" / "encoder_reference.npz"
MN04 = SHARED / "weights" / "mn04_as_mAP_432.pt"


@pytest.fixture(scope="module")
def ref():
    if not FIXTURE.is_file():
        pytest.skip(f"shared fixtures not found at {FIXTURE}")
    return dict(np.load(FIXTURE))


@pytest.fixture(scope="module")
def mn04():
    if not MN04.is_file():
        pytest.skip(f"shared mn04 weights not found at {MN04}")
    return get_encoder("efficientat_mn04", weights_path=str(MN04))


# -- Kaldi fbank ----------------------------------------------------------------------
def test_fbank_eat_matches_fixture(ref):
    w = torch.from_numpy(ref["waveform_16k"]).float()[None]
    out = KaldiFbank(FbankParams(window="hanning"))(w - w.mean())[0].numpy()
    assert out.shape == ref["fbank_eat"].shape == (398, 128)
    diff = np.abs(out - ref["fbank_eat"])
    # float32 noise only matters in near-empty bins (log energy ~ -14): median is exact
    assert np.median(diff) < 1e-5 and np.percentile(diff, 99.9) < 1e-4 and diff.max() < 1e-3


def test_fbank_beats_matches_fixture(ref):
    w = torch.from_numpy(ref["waveform_16k"]).float()[None]
    out = KaldiFbank(FbankParams(window="povey"))(w * 2**15)[0].numpy()
    diff = np.abs(out - ref["fbank_beats"])
    assert np.percentile(diff, 99.9) < 1e-4 and diff.max() < 5e-4


def test_fbank_windows_differ_and_frames_snip_edges():
    w = torch.randn(2, 16_000 + 100)
    a, b = KaldiFbank(FbankParams(window="hanning"))(w), KaldiFbank(FbankParams(window="povey"))(w)
    assert a.shape == (2, FbankParams().n_frames(16_100), 128) == (2, 99, 128)
    assert not torch.allclose(a, b)


# -- EfficientAT mn04 ------------------------------------------------------------------
def test_mn04_matches_fixture(ref, mn04):
    mel = mn04.frontend(torch.from_numpy(ref["waveform_32k"]).float()[None])[0].numpy()
    np.testing.assert_allclose(mel, ref["efficientat_mel"], atol=1e-4, rtol=1e-5)
    out = mn04.forward_all([ref["waveform_16k"]], 16_000)[0]  # resamples 16 -> 32 kHz itself
    np.testing.assert_allclose(out.embedding[0].numpy(), ref["efficientat_embedding"], atol=1e-3)
    np.testing.assert_allclose(out.logits[0].numpy(), ref["efficientat_logits"], atol=1e-3)
    assert list(np.argsort(-out.logits[0].numpy())[:3]) == [137, 158, 138]


def test_mn04_sine_wave_sanity(mn04):
    t = np.arange(160_000) / 16_000
    x = (
        0.5 * np.sin(2 * np.pi * 440 * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    ).astype(np.float32)
    logits = mn04.logits([x], 16_000)[0]
    assert int((logits > logits[501]).sum()) < 3  # "Sine wave" among the top 3


def test_mn04_batched_outputs_and_frames(mn04):
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(32_000).astype(np.float32) * 0.1 for _ in range(3)] + [
        rng.standard_normal(48_000).astype(np.float32) * 0.1
    ]
    emb = mn04.embed(waves, 16_000)
    single = np.concatenate([mn04.embed([w], 16_000) for w in waves])
    assert emb.shape == (4, 384) and mn04.weights == "pretrained"
    np.testing.assert_allclose(emb, single, atol=1e-5)
    frames = mn04.embed_frames(waves[:1], 16_000)[0]
    assert frames.shape[1] == 384 and frames.shape[0] == int(
        np.ceil(201 / 32)
    )  # 2 s at 32 kHz: 201 mel frames
    np.testing.assert_allclose(frames.mean(axis=0), emb[0], atol=1e-5)
    hidden = get_encoder("efficientat_mn04_hidden", weights_path=str(MN04)).embed(waves[:1], 16_000)
    assert hidden.shape == (1, 512)


def test_mn04_strict_load_rejects_wrong_checkpoint(tmp_path, monkeypatch):
    bad = tmp_path / "mn04_as_mAP_432.pt"
    torch.save({"features.0.0.weight": torch.zeros(8, 1, 3, 3)}, bad)
    from stethoscope.encoders import efficientat

    monkeypatch.setattr(efficientat, "MN04_SHA256", W.sha256_of(bad))
    with pytest.raises(CheckpointError, match="does not match the mn04 architecture"):
        efficientat.EfficientATEncoder(weights_path=str(bad))


# -- what a saved model records of its encoder ---------------------------------------------
def test_saved_encoder_tag_round_trips_and_names_the_official_file():
    sha = MN04_SHA256
    tag = {
        "encoder": "efficientat_mn04",
        "weights": "pretrained",
        "weights_sha256": sha,
        "dim": 384,
    }
    saved = saved_encoder_tag(tag)
    assert saved == {
        "encoder": "efficientat_mn04",
        "encoder_weights": "pretrained",
        "encoder_weights_sha256": sha,
        "encoder_weights_file": "mn04_as_mAP_432.pt",
    }
    assert restore_encoder_tag("x", "efficientat_mn04", saved) == {
        k: tag[k] for k in ("encoder", "weights", "weights_sha256")
    }
    random_tag = encoder_tag(get_encoder("random"))
    assert saved_encoder_tag(random_tag)["encoder_weights_file"] is None
    assert restore_encoder_tag("x", "random", saved_encoder_tag(random_tag)) == {
        "encoder": "random",
        "weights": "random",
        "weights_sha256": "random",
    }
    none = saved_encoder_tag(None)  # a system that used no encoder (TLDiffGAN without wave)
    assert set(none.values()) == {None} and restore_encoder_tag("x", "random", none) is None
    with pytest.raises(CheckpointError, match="saved with encoder 'efficientat_mn04'"):
        restore_encoder_tag("x", "random", saved)


def test_fitted_encoder_on_keeps_the_pair_of_its_device():
    tag = encoder_tag(get_encoder("random"))
    pair = fitted_encoder_on(None, "random", tag, "cpu")
    assert pair[0] == "cpu" and encoder_tag(pair[1]) == tag
    assert fitted_encoder_on(pair, "random", tag, "cpu") is pair  # kept, not loaded again
    moved = fitted_encoder_on(("cuda", pair[1]), "random", tag, "cpu")  # another device: anew
    assert moved[0] == "cpu" and moved[1] is not pair[1]


# -- random encoder and registry ---------------------------------------------------------
def test_random_encoder_is_labelled_and_deterministic():
    rng = np.random.default_rng(2)
    waves = [rng.standard_normal(16_000).astype(np.float32) for _ in range(2)]
    a, b = get_encoder("random"), get_encoder("random")
    assert a.weights == "random" and a.name == "random" and a.dim == 384
    emb = a.embed(waves, 16_000)
    np.testing.assert_array_equal(emb, b.embed(waves, 16_000))
    assert 0.05 < np.abs(emb).mean() < 50  # BatchNorm calibrated on seeded noise: not vanishing
    with pytest.raises(ConfigError):
        get_encoder("random", weights_path="/some/file.pt")


def test_registry_lists_and_rejects_unknown():
    rows = {r["name"]: r for r in list_encoders()}
    assert {"efficientat_mn04", "eat_base", "beats_iter3", "random"} <= set(rows)
    assert (
        rows["efficientat_mn04"]["weights_file"] == "mn04_as_mAP_432.pt"
        and rows["random"]["weights_present"]
    )
    with pytest.raises(ConfigError, match="unknown encoder"):
        get_encoder("nope")


def test_embed_clips_caches_by_content(tmp_path):
    import soundfile as sf

    from stethoscope.data.clip import Clip

    rng = np.random.default_rng(3)
    paths = []
    for i in range(3):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(16_000)).astype(np.float32), 16_000)
        paths.append(p)
    clips = [Clip(path=p, machine="fan") for p in paths]
    enc = get_encoder("random")
    calls = []
    original = enc.embed
    enc.embed = lambda w, sr: calls.append(len(w)) or original(w, sr)  # type: ignore[method-assign]
    first = embed_clips(enc, clips, cache_dir=tmp_path / "cache", progress=False)
    second = embed_clips(enc, clips, cache_dir=tmp_path / "cache", progress=False)
    assert calls == [3] and first.shape == (3, 384)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(
        first, original([sf.read(p, dtype="float32")[0] for p in paths], 16_000), atol=1e-6
    )


# -- weight finder (never touches the network) -------------------------------------------
@pytest.fixture
def no_network(monkeypatch, tmp_path):
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)

    def offline(url, dest):
        raise OSError("network unreachable")

    monkeypatch.setattr(W, "download", offline)


def test_missing_weights_error_says_where(no_network, tmp_path):
    with pytest.raises(CheckpointError) as err:
        W.find_weights("model.pt", "0" * 64, "https://example.org/model.pt")
    msg = str(err.value)
    assert str(tmp_path / "cache" / "model.pt") in msg and "STETHOSCOPE_WEIGHTS_DIR" in msg
    assert "https://example.org/model.pt" in msg and "network unreachable" in msg
    assert not list((tmp_path / "cache").glob("*"))  # no partial file left behind


def test_sha_mismatch_and_search_order(no_network, tmp_path, monkeypatch):
    good = tmp_path / "env" / "model.pt"
    good.parent.mkdir()
    good.write_bytes(b"weights")
    sha = W.sha256_of(good)
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(good.parent))
    assert W.find_weights("model.pt", sha, None) == good
    explicit = tmp_path / "explicit.pt"
    explicit.write_bytes(b"other")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        W.find_weights("model.pt", sha, None, weights_path=explicit)
    with pytest.raises(CheckpointError, match="not found"):
        W.find_weights("model.pt", sha, None, weights_path=tmp_path / "absent.pt")


def test_download_is_verified_and_atomic(no_network, tmp_path, monkeypatch):
    payload = b"the real weights"
    import hashlib

    sha = hashlib.sha256(payload).hexdigest()
    monkeypatch.setattr(W, "download", lambda url, dest: Path(dest).write_bytes(payload))
    path = W.find_weights("model.pt", sha, "https://example.org/model.pt")
    assert path == tmp_path / "cache" / "model.pt" and path.read_bytes() == payload
    monkeypatch.setattr(W, "download", lambda url, dest: Path(dest).write_bytes(b"tampered"))
    path.unlink()
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        W.find_weights("model.pt", sha, "https://example.org/model.pt")
    assert not list((tmp_path / "cache").glob("*"))


def test_mn04_missing_weights_raise(no_network):
    with pytest.raises(CheckpointError, match=r"mn04_as_mAP_432\.pt"):
        get_encoder("efficientat_mn04")
