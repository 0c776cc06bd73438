"""The embedding_knn system: fit / score / threshold / save-load, and no silent fallback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import roc_auc_score

from stethoscope.data.clip import Clip
from stethoscope.encoders import weights as W
from stethoscope.engine import RunContext
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
    hum = 0.2 * np.sin(2 * np.pi * (120 + rng.normal(0, 2)) * t) + 0.05 * rng.standard_normal(
        len(t)
    )
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
    np.testing.assert_allclose(
        load_system(tmp_path / detector).score(clips["test"], CTX), scores, rtol=1e-6, atol=1e-9
    )


def test_missing_mn04_weights_raise_no_fallback(clips, tmp_path, monkeypatch):
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "weights")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)

    def offline(url, dest):
        raise OSError("no network")

    monkeypatch.setattr(W, "download", offline)
    system = get_system("embedding_knn")
    with pytest.raises(
        CheckpointError, match=r"mn04_as_mAP_432\.pt.*download it from https://github.com/fschmid56"
    ):
        system.fit(clips["train"], ctx=_ctx(tmp_path))


def test_pretrained_mn04_system(clips, tmp_path):
    if not MN04.is_file():
        pytest.skip(f"shared mn04 weights not found at {MN04}")
    ctx = CTX.replace(weights_dirs=(MN04.parent,))
    system = get_system("embedding_knn")
    system.fit(clips["train"], ctx=_ctx(tmp_path).replace(weights_dirs=(MN04.parent,)))
    scores = system.score(clips["test"], ctx)
    assert roc_auc_score([c.label for c in clips["test"]], scores) > 0.9
    extra = system.extra_state()
    assert extra["encoder"] == "efficientat_mn04" and extra["encoder_weights"] == "pretrained"
    assert extra["encoder_weights_sha256"] == W.sha256_of(MN04) and extra["embedding_dim"] == 384
    system.save(tmp_path / "model")
    np.testing.assert_allclose(
        load_system(tmp_path / "model").score(clips["test"], ctx), scores, rtol=1e-6, atol=1e-9
    )
    config = tmp_path / "model" / "config.json"
    saved = json.loads(config.read_text())
    saved["params"]["encoder"] = "random"  # a config edited to another encoder than the one fitted
    config.write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="saved with encoder"):
        load_system(tmp_path / "model")


def test_same_seed_same_scores(clips, tmp_path):
    fits = [
        get_system("embedding_knn", encoder="random", detector="gmm").fit(
            clips["train"], ctx=CTX.replace(seed=3)
        )
        for _ in range(2)
    ]
    np.testing.assert_allclose(
        fits[0].score(clips["test"], CTX), fits[1].score(clips["test"], CTX), rtol=1e-6, atol=1e-9
    )


@pytest.fixture
def offline_machine(tmp_path, monkeypatch):
    """A machine with no weights anywhere by default: no $STETHOSCOPE_WEIGHTS_DIR, an empty
    cache folder, no network."""
    if not MN04.is_file():
        pytest.skip(f"shared mn04 weights not found at {MN04}")
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "home-cache")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)

    def offline(url, dest):
        raise OSError("no network")

    monkeypatch.setattr(W, "download", offline)


def test_a_moved_model_finds_its_weights_by_sha256(
    clips, tmp_path, offline_machine, monkeypatch, capsys
):
    """Trained with the weights in folder A; the model folder moved and the weights copied to
    folder B under another name: it loads and scores the same. The folder names the weights by
    sha256, never by path; without them the CLI says which file and sha256 it needs (exit 2)."""
    dir_a = tmp_path / "A"
    dir_a.mkdir()
    shutil.copy(MN04, dir_a / MN04.name)
    ctx_a = CTX.replace(weights_dirs=(dir_a,))
    system = get_system("embedding_knn").fit(clips["train"], ctx=ctx_a)
    scores = system.score(clips["test"], ctx_a)
    system.save(tmp_path / "machine1" / "model")
    text = (tmp_path / "machine1" / "model" / "config.json").read_text()
    assert str(dir_a) not in text and "weights_path" not in text
    extra = json.loads(text)["extra_state"]
    assert extra["encoder_weights_sha256"] == W.sha256_of(MN04)
    assert extra["encoder_weights_file"] == MN04.name

    moved = Path(shutil.move(tmp_path / "machine1" / "model", tmp_path / "machine2-model"))
    shutil.rmtree(dir_a)
    (tmp_path / "B" / "encoders").mkdir(parents=True)
    shutil.copy(MN04, tmp_path / "B" / "encoders" / "my-mn04-copy.bin")
    loaded = load_system(moved)
    ctx_b = CTX.replace(weights_dirs=(tmp_path / "B",))
    np.testing.assert_allclose(loaded.score(clips["test"], ctx_b), scores, rtol=1e-6, atol=1e-9)
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(tmp_path / "B"))  # the environment serves as well
    np.testing.assert_allclose(
        load_system(moved).score(clips["test"][:3], CTX), scores[:3], rtol=1e-6, atol=1e-9
    )

    monkeypatch.delenv(W.WEIGHTS_DIR_ENV)
    from stethoscope.cli import main as cli_main

    argv = ["score", "--model", str(moved), str(clips["test"][0].path), "--no-cache", "--quiet"]
    rc = cli_main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and f"{MN04.name} (sha256 {W.sha256_of(MN04)})" in err and "Traceback" not in err
    assert cli_main([*argv, "--weights-dir", str(tmp_path / "B")]) == 0


def test_an_old_folder_with_weights_path_still_loads(clips, tmp_path, offline_machine):
    """Folders written when ``weights_path`` was a hyperparameter: the path is only a hint,
    used when it still holds the weights and ignored when it is dead."""
    shutil.copy(MN04, tmp_path / "renamed.pt")
    shared = CTX.replace(weights_dirs=(MN04.parent,))
    system = get_system("embedding_knn").fit(clips["train"], ctx=shared)
    scores = system.score(clips["test"][:4], shared)
    system.save(tmp_path / "model")
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    cfg["params"]["weights_path"] = str(tmp_path / "renamed.pt")  # outside every weights folder
    (tmp_path / "model" / "config.json").write_text(json.dumps(cfg))
    old = load_system(tmp_path / "model")
    assert "weights_path" not in old.get_params()
    np.testing.assert_allclose(old.score(clips["test"][:4], CTX), scores, rtol=1e-6, atol=1e-9)
    cfg["params"]["weights_path"] = "/no/such/machine/mn04_as_mAP_432.pt"  # dead: the folders serve
    (tmp_path / "model" / "config.json").write_text(json.dumps(cfg))
    dead = load_system(tmp_path / "model")
    np.testing.assert_allclose(dead.score(clips["test"][:4], shared), scores, rtol=1e-6, atol=1e-9)
    with pytest.raises(CheckpointError, match=f"sha256 {W.sha256_of(MN04)}"):
        load_system(tmp_path / "model").score(clips["test"][:1], CTX)
