"""TLDiffGAN system: fusion, cross-fitted references, detector selection, ensemble, persistence,
ablations, configs and the CLI path with labelled validation clips."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from stethoscope.config import read_config
from sklearn.metrics import roc_auc_score

from stethoscope.cli import main as cli_main
from stethoscope.data.layouts import scan
from stethoscope.encoders import weights as W
from stethoscope.errors import CheckpointError, ConfigError
from stethoscope.systems import get_system, load_system
from stethoscope.systems.base import gamma_threshold
from stethoscope.systems.tldiffgan import TLDiffGANSystem

SHARED = Path(os.environ.get("STETHOSCOPE_SHARED", Path(__file__).resolve().parents[3] / "shared"))
MN04 = SHARED / "weights" / "mn04_as_mAP_432.pt"
CONFIGS = Path(__file__).resolve().parents[2] / "src" / "stethoscope" / "configs"
TINY = dict(n_frames=48, ae_channels=8, latent_channels=4, gen_channels=8, gen_blocks=1, disc_channels=8,
            batch_size=4, learning_rate=1e-3, epochs=2, progress=False)
CANDIDATES = ["recon", "knn", "lof", "gmm", "sos"]


@pytest.fixture(scope="module")
def gearbox(toy_root: Path) -> tuple[list, list]:
    clips = scan(toy_root, machine="gearbox")
    return [c for c in clips if c.split == "train"], [c for c in clips if c.split == "test"]


def _system(tmp: Path, **kw) -> TLDiffGANSystem:
    return get_system("tldiffgan", **{"encoder": "random", "cache_dir": str(tmp / "cache"), **TINY, **kw})


@pytest.fixture(scope="module")
def fitted(gearbox, tmp_path_factory) -> TLDiffGANSystem:
    """Full system (random encoder), fitted without validation data: the ensemble default."""
    train, _ = gearbox
    return _system(tmp_path_factory.mktemp("tld")).fit(train)


def test_fusion_dims_and_standardisation(fitted, gearbox):
    train, _ = gearbox
    mel, wave = fitted.mel_embedding(train), fitted.wave_embedding(train)
    assert mel.shape == (len(train), TINY["latent_channels"]) and wave.shape == (len(train), 384)
    joint = fitted.joint_embedding(train)
    assert joint.shape == (len(train), 4 + 384)
    np.testing.assert_allclose(joint, fitted.joint_train_, atol=1e-9)
    np.testing.assert_allclose(joint.mean(axis=0), 0.0, atol=1e-8)
    live = wave.std(axis=0) > 1e-12  # constant wave dimensions stay at 0
    # balanced: each branch carries half of the total variance (= joint dimension)
    var = joint.var(axis=0)
    np.testing.assert_allclose(var[:4], 388 / (2 * 4), rtol=1e-6)
    np.testing.assert_allclose(var[4:][live], 388 / (2 * 384), rtol=1e-6)
    # the stored scaler statistics are the branch means and stds of the training clips
    np.testing.assert_allclose(fitted.scalers_["mel"][0], mel.mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fitted.scalers_["wave"][1][live], wave.std(axis=0)[live], rtol=1e-5)
    fitted.balance_branches = False
    try:
        plain = fitted.joint_embedding(train)
    finally:
        fitted.balance_branches = True
    np.testing.assert_allclose(plain.var(axis=0)[np.r_[np.ones(4, bool), live]], 1.0, rtol=1e-6)


def test_heldout_references_are_cross_fitted(fitted, gearbox):
    train, _ = gearbox
    assert fitted.candidates == CANDIDATES
    for name in CANDIDATES:
        assert fitted.reference_[name].shape == (len(train),)
    np.testing.assert_allclose(fitted.reference_["recon"], fitted.mel_branch.score(train), rtol=1e-6)
    # held-out KNN distances come from detectors that never saw the clip: larger on average than
    # the in-sample ones of the full fit, and not its leave-one-out scores either
    knn = fitted.detectors_["knn"]
    assert fitted.reference_["knn"].mean() > knn.score(fitted.joint_train_).mean()
    assert not np.allclose(fitted.reference_["knn"], knn.train_scores())


def test_ensemble_default_without_validation(fitted, gearbox, monkeypatch):
    _, test = gearbox
    assert fitted.selection_ == {"rule": "ensemble", "chosen": "ensemble",
                                 "reason": "ensemble: no labelled validation data"}
    scores = fitted.score(test)
    assert scores.shape == (len(test),) and np.all((scores >= 0) & (scores <= 1))
    # rank normalisation: below every reference -> 0, above every reference -> 1, at the median -> ~0.5
    ref = fitted.reference_
    fake = {c: np.array([r.min() - 100 * r.std(), r.max() + 100 * r.std(), np.median(r)]) for c, r in ref.items()}
    monkeypatch.setattr(fitted, "candidate_scores", lambda clips, names=None: fake)
    low, high, mid = fitted.score(test[:3])
    assert low < 1e-6 and high > 1 - 1e-6 and 0.3 < mid < 0.7
    # the threshold is the gamma fit of the training clips' leave-one-out ensemble scores
    assert fitted.threshold_ == pytest.approx(gamma_threshold(fitted._loo_ensemble()))
    decisions = fitted.decide(np.array([0.0, 1.0]))
    assert decisions.tolist() == [0, 1]


def test_end_to_end_round_trip(fitted, gearbox, tmp_path):
    _, test = gearbox
    scores = fitted.score(test)
    labels = np.array([c.label for c in test])
    assert np.isfinite(scores).all() and len(set(scores.round(9))) > 1 and set(labels) == {0, 1}
    amap = fitted.anomaly_map(test[0])
    assert amap.shape == (128, 126) and np.isfinite(amap).all() and amap.min() >= 0
    np.testing.assert_array_equal(amap, fitted.mel_branch.anomaly_map(test[0]))
    assert fitted.temporal_attention(test[0]).shape == (126,)
    fitted.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["extra_state"]["selection"]["reason"] == "ensemble: no labelled validation data"
    assert config["extra_state"]["dims"] == {"mel": 4, "wave": 384}
    assert config["extra_state"]["encoder_weights"] == "random"
    loaded = load_system(tmp_path / "model")
    np.testing.assert_array_equal(loaded.score(test), scores)
    for name, values in fitted.candidate_scores(test).items():
        np.testing.assert_array_equal(loaded.candidate_scores(test, [name])[name], values)
    assert loaded.threshold_ == fitted.threshold_
    np.testing.assert_array_equal(loaded.decide(scores), fitted.decide(scores))


def test_validation_picks_the_best_candidate(gearbox, tmp_path, monkeypatch):
    """Fake candidate scores on the validation clips where GMM separates perfectly and the
    others do not: selection must pick GMM, record every AUC and use GMM's threshold."""
    train, test = gearbox
    labels = np.array([c.label for c in test], dtype=float)
    rng = np.random.default_rng(0)
    fake = {c: rng.standard_normal(len(test)) for c in CANDIDATES}
    fake["gmm"] = labels + 0.01 * rng.standard_normal(len(test))
    fake["recon"] = -labels  # confidently wrong
    system = _system(tmp_path)
    monkeypatch.setattr(system, "candidate_scores", lambda clips, names=None: fake)
    system.fit(train, test)
    monkeypatch.undo()
    sel = system.selection_
    assert sel["rule"] == "validation" and sel["chosen"] == "gmm"
    assert sel["validation_auc"]["gmm"] == 1.0 and sel["validation_auc"]["recon"] == 0.0
    assert set(sel["validation_auc"]) == set(CANDIDATES)
    assert system.threshold_ == pytest.approx(gamma_threshold(system.reference_["gmm"]))
    np.testing.assert_array_equal(system.score(test), system.candidate_scores(test, ["gmm"])["gmm"])
    # validation clips without anomalies fall back to the ensemble, saying why
    normals = [c for c in test if c.label == 0]
    assert system._select(normals)["reason"].startswith("ensemble: validation data needs normal and anomalous")


def test_no_wave_ablation_needs_no_encoder(gearbox, tmp_path, monkeypatch):
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "no-weights")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)
    train, test = gearbox
    system = _system(tmp_path, encoder="eat_base", use_wave_branch=False, selection="knn").fit(train)
    assert system.joint_train_.shape == (len(train), 4)
    assert system.selection_["chosen"] == "knn" and system.selection_["rule"] == "fixed"
    mean, scale = system.scalers_["mel"]
    joint = system.joint_embedding(test)
    np.testing.assert_allclose(joint, (system.mel_embedding(test) - mean) / scale, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(system.score(test), system.detectors_["knn"].score(joint))
    with pytest.raises(ConfigError, match="waveform branch is off"):
        system.wave_embedding(test)
    system.save(tmp_path / "m")
    np.testing.assert_array_equal(load_system(tmp_path / "m").score(test), system.score(test))


@pytest.mark.parametrize("config", ["tldiffgan_eat.yaml", "tldiffgan_beats.yaml"])
def test_encoder_swap_without_checkpoint_fails_before_training(config, gearbox, tmp_path, monkeypatch):
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "no-weights")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)
    cfg = read_config(CONFIGS / config)
    system = get_system("tldiffgan", **{**cfg, **TINY, "cache_dir": str(tmp_path / "c")})
    with pytest.raises(CheckpointError, match="weights not found"):
        system.fit(gearbox[0])
    assert system.mel_branch.model is None  # nothing was trained


def test_configs_mirror_the_constructor():
    names = sorted(p.name for p in CONFIGS.glob("tldiffgan*.yaml"))
    assert {"tldiffgan.yaml", "tldiffgan_cpu.yaml", "tldiffgan_no_diffusion.yaml", "tldiffgan_no_wave.yaml",
            "tldiffgan_no_tmixup.yaml", "tldiffgan_random_encoder.yaml"} <= set(names)
    cpu = read_config(CONFIGS / "tldiffgan_cpu.yaml")
    expected = {"tldiffgan_no_diffusion.yaml": {"latent_diffusion": False}, "tldiffgan_no_tmixup.yaml": {"tmixup": False},
                "tldiffgan_no_wave.yaml": {"use_wave_branch": False}, "tldiffgan_random_encoder.yaml": {"encoder": "random"},
                "tldiffgan_eat.yaml": {"encoder": "eat_base"}, "tldiffgan_beats.yaml": {"encoder": "beats_iter3"}}
    for name in names:
        cfg = read_config(CONFIGS / name)
        assert set(cfg) == set(TLDiffGANSystem.param_names()), name
        assert get_system("tldiffgan", **cfg).get_params() == cfg
        if name in expected:
            assert {k: v for k, v in cfg.items() if cpu[k] != v} == expected[name], name
    paper = read_config(CONFIGS / "tldiffgan.yaml")
    assert (paper["batch_size"], paper["epochs"], paper["learning_rate"]) == (512, 150, 1e-4)
    with pytest.raises(ConfigError):
        get_system("tldiffgan", selection="best")
    with pytest.raises(ConfigError):
        get_system("tldiffgan", detectors=["knn", "recon"])


def test_cli_train_with_validation_selects_by_auc(toy_root, tmp_path):
    """`stethoscope train --config tldiffgan_cpu.yaml --val ROOT`: the saved config records the
    validation AUC of every candidate and the argmax is the chosen scorer."""
    sets = [f"{k}={v}" for k, v in {**TINY, "encoder": "random", "cache_dir": str(tmp_path / "c")}.items()]
    rc = cli_main(["train", "--data", str(toy_root), "--machine", "gearbox", "--system", "tldiffgan",
                   "--config", str(CONFIGS / "tldiffgan_cpu.yaml"), "--val", str(toy_root), "--out",
                   str(tmp_path / "model"), "--set", *sets])
    assert rc == 0
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    sel = saved["extra_state"]["selection"]
    assert sel["rule"] == "validation" and set(sel["validation_auc"]) == set(CANDIDATES)
    assert sel["chosen"] == max(CANDIDATES, key=lambda c: sel["validation_auc"][c])
    system = load_system(tmp_path / "model")
    val = scan(toy_root, machine="gearbox")
    labels = [c.label for c in val]
    for name, scores in system.candidate_scores(val).items():
        assert roc_auc_score(labels, scores) == pytest.approx(sel["validation_auc"][name])


def test_pretrained_mn04_branch(gearbox, tmp_path):
    if not MN04.exists():
        pytest.skip(f"shared mn04 weights not found at {MN04}")
    train, test = gearbox
    system = get_system("tldiffgan", weights_path=str(MN04), cache_dir=str(tmp_path / "c"),
                        **{**TINY, "epochs": 1}).fit(train)
    extra = system.extra_state()
    assert extra["encoder"] == "efficientat_mn04" and extra["encoder_weights"] == "pretrained"
    assert extra["encoder_weights_sha256"] == W.sha256_of(MN04)
    assert system.joint_train_.shape == (len(train), 4 + 384)
    assert np.isfinite(system.score(test)).all()
