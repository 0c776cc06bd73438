"""The embedding_knn system: fit / score / threshold / save-load, and no silent fallback."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import roc_auc_score

from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.encoders import weights as W
from stethoscope.errors import CheckpointError
from stethoscope.systems import get_system, load_system

SHARED = Path(os.environ.get("STETHOSCOPE_SHARED", Path(__file__).resolve().parents[3] / "shared"))
MN04 = SHARED / "weights" / "mn04_as_mAP_432.pt"
SR = 16_000
CTX = RunContext(progress=False)


def _ctx(tmp_path: Path) -> RunContext:
    return CTX.replace(cache_dir=tmp_path / "cache")


def _clip(rng: np.random.Generator, anomalous: bool, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    hum = 0.2 * np.sin(2 * np.pi * (120 + rng.normal(0, 2)) * t) + 0.05 * rng.standard_normal(len(t))
    if anomalous:  # bursts of a 2.5 kHz whine
        hum += 0.3 * np.sin(2 * np.pi * 2500 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    return hum.astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    out = {"train": [], "test": []}
    for split, n_norm, n_anom in (("train", 10, 0), ("test", 6, 6)):
        for i in range(n_norm + n_anom):
            label = int(i >= n_norm)
            path = root / f"{split}_{i:02d}_{label}.wav"
            sf.write(path, _clip(rng, bool(label)), SR)
            out[split].append(Clip(path=path, machine="fan", split=split, label=label))
    return out


def test_random_encoder_system_round_trip(clips, tmp_path):
    system = get_system("embedding_knn", encoder="random")
    system.fit(clips["train"], ctx=_ctx(tmp_path))
    scores = system.score(clips["test"], CTX)
    labels = [c.label for c in clips["test"]]
    assert roc_auc_score(labels, scores) > 0.9
    assert system.threshold_ is not None and np.isfinite(system.threshold_)
    extra = system.extra_state()
    assert extra["encoder"] == "random" and extra["encoder_weights"] == "random"
    system.save(tmp_path / "model")
    again = load_system(tmp_path / "model")
    np.testing.assert_allclose(again.score(clips["test"], CTX), scores, rtol=1e-6, atol=1e-9)
    assert again.threshold_ == system.threshold_
    np.testing.assert_array_equal(again.decide(scores), system.decide(scores))


@pytest.mark.parametrize("detector", ["lof", "gmm", "sos", "mahalanobis"])
def test_other_detectors_through_the_system(clips, tmp_path, detector):
    system = get_system("embedding_knn", encoder="random", detector=detector)
    system.fit(clips["train"], ctx=_ctx(tmp_path))
    scores = system.score(clips["test"], CTX)
    assert scores.shape == (12,) and roc_auc_score([c.label for c in clips["test"]], scores) > 0.8
    system.save(tmp_path / detector)
    np.testing.assert_allclose(load_system(tmp_path / detector).score(clips["test"], CTX), scores, rtol=1e-6, atol=1e-9)


def test_missing_mn04_weights_raise_no_fallback(clips, tmp_path, monkeypatch):
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "weights")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)

    def offline(url, dest):
        raise OSError("no network")
    monkeypatch.setattr(W, "download", offline)
    system = get_system("embedding_knn")
    with pytest.raises(CheckpointError, match="mn04_as_mAP_432.pt.*download it from https://github.com/fschmid56"):
        system.fit(clips["train"], ctx=_ctx(tmp_path))


def test_pretrained_mn04_system(clips, tmp_path):
    if not MN04.is_file():
        pytest.skip(f"shared mn04 weights not found at {MN04}")
    system = get_system("embedding_knn", weights_path=str(MN04))
    system.fit(clips["train"], ctx=_ctx(tmp_path))
    scores = system.score(clips["test"], CTX)
    assert roc_auc_score([c.label for c in clips["test"]], scores) > 0.9
    extra = system.extra_state()
    assert extra["encoder"] == "efficientat_mn04" and extra["encoder_weights"] == "pretrained"
    assert extra["encoder_weights_sha256"] == W.sha256_of(MN04) and extra["embedding_dim"] == 384
    system.save(tmp_path / "model")
    np.testing.assert_allclose(load_system(tmp_path / "model").score(clips["test"], CTX), scores, rtol=1e-6, atol=1e-9)
    config = tmp_path / "model" / "config.json"
    saved = json.loads(config.read_text())
    saved["params"]["encoder"] = "random"  # a config edited to another encoder than the one fitted
    config.write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="saved with encoder"):
        load_system(tmp_path / "model")


def test_same_seed_same_scores(clips, tmp_path):
    fits = [get_system("embedding_knn", encoder="random", detector="gmm").fit(clips["train"], ctx=CTX.replace(seed=3))
            for _ in range(2)]
    np.testing.assert_allclose(fits[0].score(clips["test"], CTX), fits[1].score(clips["test"], CTX),
        rtol=1e-6, atol=1e-9)
