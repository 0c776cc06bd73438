"""TLDiffGAN system: fusion, cross-fitted references, detector selection, ensemble, persistence,
ablations, configs, reproducibility and the CLI path with labelled validation clips."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.metrics import roc_auc_score

from stethoscope.cli import main as cli_main
from stethoscope.config import load_config, merge, read_config
from stethoscope.data.layouts import scan
from stethoscope.encoders import embed_clips, get_encoder
from stethoscope.encoders import weights as W
from stethoscope.engine import RunContext
from stethoscope.errors import CheckpointError, ConfigError
from stethoscope.features.extract import logmels
from stethoscope.systems import get_system, load_system
from stethoscope.systems.ldgan import LDGANSystem
from stethoscope.systems.params import RUNTIME_KEYS
from stethoscope.systems.threshold import THRESHOLD_PARAMS, gamma_threshold
from stethoscope.systems.tldiffgan import TLDiffGANSystem

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "stethoscope" / "configs"
TINY = {
    "n_frames": 48,
    "ae_channels": 8,
    "latent_channels": 4,
    "gen_channels": 8,
    "gen_blocks": 1,
    "disc_channels": 8,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "epochs": 2,
}
CTX = RunContext(progress=False)
CANDIDATES = ["recon", "knn", "lof", "gmm", "sos"]
TOL = {"rtol": 1e-6, "atol": 1e-9}


@pytest.fixture(scope="module")
def gearbox(toy_root: Path) -> tuple[list, list]:
    clips = scan(toy_root, machine="gearbox")
    return [c for c in clips if c.split == "train"], [c for c in clips if c.split == "test"]


def _system(**kw) -> TLDiffGANSystem:
    return get_system("tldiffgan", **{"encoder": "random", "ldgan": TINY, **kw})


@pytest.fixture(scope="module")
def fitted(gearbox) -> TLDiffGANSystem:
    """Full system (random encoder), fitted without validation data (the ensemble default),
    seed 0. Shared: tests only read it (`_variant` gives a private copy)."""
    train, _ = gearbox
    return _system().fit(train, ctx=CTX)


def _variant(system: TLDiffGANSystem, **changes) -> TLDiffGANSystem:
    """A private copy of a fitted system, with some hyperparameters changed (scoring ones)."""
    other = get_system(system.name, **{**system.get_params(), **changes})
    other.load_extra_state(copy.deepcopy(system.extra_state()))
    other.load_state_tensors({k: v.clone() for k, v in system.state_tensors().items()})
    other.threshold_ = system.threshold_
    return other


def _mel_embedding(system: TLDiffGANSystem, clips) -> np.ndarray:
    mels = logmels(clips, system.branch.logmel_params, None, progress=False)
    return system.branch.evaluate(mels, CTX).embeddings.astype(np.float64)


def test_fusion_dims_and_standardisation(fitted, gearbox):
    train, _ = gearbox
    mel = _mel_embedding(fitted, train)
    wave = embed_clips(get_encoder("random"), train, None, progress=False).astype(np.float64)
    assert mel.shape == (len(train), TINY["latent_channels"]) and wave.shape == (len(train), 384)
    joint = fitted.joint_embedding(train, CTX)
    assert joint.shape == (len(train), 4 + 384)
    np.testing.assert_allclose(joint, fitted.joint_train_, **TOL)
    np.testing.assert_allclose(joint.mean(axis=0), 0.0, atol=1e-8)
    live = wave.std(axis=0) > 1e-12  # constant wave dimensions stay at 0
    assert live.sum() > 300
    # balanced: each branch carries half of the total variance (= joint dimension)
    var = fitted.joint_train_.var(axis=0)
    np.testing.assert_allclose(var[:4], 388 / (2 * 4), rtol=1e-6)
    np.testing.assert_allclose(var[4:][live], 388 / (2 * 384), rtol=1e-6)
    # the stored scaler statistics are the branch means and stds of the training clips
    np.testing.assert_allclose(fitted.scalers_["mel"][0], mel.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.scalers_["mel"][1], mel.std(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.scalers_["wave"][0], wave.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.scalers_["wave"][1][live], wave.std(axis=0)[live], rtol=1e-5)
    # without balancing, each dimension is plainly standardised
    plain = _variant(fitted, balance_branches=False).joint_embedding(train, CTX)
    np.testing.assert_allclose(plain.var(axis=0)[np.r_[np.ones(4, bool), live]], 1.0, rtol=1e-4)
    np.testing.assert_allclose(plain[:, :4] * np.sqrt(388 / 8), joint[:, :4], rtol=1e-6, atol=1e-9)


def test_heldout_references_are_cross_fitted(fitted, gearbox):
    train, _ = gearbox
    assert fitted.candidates == CANDIDATES
    for name in CANDIDATES:
        assert fitted.reference_[name].shape == (len(train),)
    np.testing.assert_allclose(
        fitted.reference_["recon"], fitted.candidate_scores(train, ["recon"], CTX)["recon"], **TOL
    )
    # held-out KNN distances come from detectors that never saw the clip: larger on average than
    # the in-sample ones of the full fit, and not its leave-one-out scores either
    knn = fitted.detectors_["knn"]
    assert fitted.reference_["knn"].mean() > knn.score(fitted.joint_train_).mean()
    assert not np.allclose(fitted.reference_["knn"], knn.train_scores())


def test_ensemble_default_without_validation(fitted, gearbox, monkeypatch):
    _, test = gearbox
    assert fitted.selection_ == {
        "rule": "ensemble",
        "chosen": "ensemble",
        "reason": "ensemble: no labelled validation data",
    }
    scores = fitted.score(test, CTX)
    assert scores.shape == (len(test),) and np.all((scores >= 0) & (scores <= 1))
    # rank normalisation: below every reference -> 0, above every reference -> 1,
    # at the median -> ~0.5
    ref = fitted.reference_
    fake = {
        c: np.array([r.min() - 100 * r.std(), r.max() + 100 * r.std(), np.median(r)])
        for c, r in ref.items()
    }
    private = _variant(fitted)
    monkeypatch.setattr(
        private,
        "_candidates_decoded",
        lambda decoded, ctx, names=None, mel=None: {n: fake[n][: len(decoded)] for n in names},
    )
    low, high, mid = private.score(test[:3], CTX)
    assert low < 1e-6 and high > 1 - 1e-6 and 0.3 < mid < 0.7
    # the in-sample threshold is the gamma fit of the training clips' leave-one-out ensemble
    # scores; the one used (crossfit, the default) comes from fold copies
    # (tests/systems/test_threshold.py)
    assert fitted.run_["threshold"]["in_sample_threshold"] == pytest.approx(
        gamma_threshold(fitted._loo_ensemble()), rel=1e-9, abs=1e-9
    )
    assert fitted.decide(np.array([0.0, 1.0])).tolist() == [0, 1]


def test_end_to_end_round_trip(fitted, gearbox, tmp_path):
    _, test = gearbox
    scores = fitted.score(test, CTX)
    labels = np.array([c.label for c in test])
    assert np.isfinite(scores).all() and len(set(scores.round(9))) > 1 and set(labels) == {0, 1}
    e = fitted.explain(test[0], CTX)
    assert (
        e.anomaly_map.shape == (128, 126)
        and np.isfinite(e.anomaly_map).all()
        and e.anomaly_map.min() >= 0
    )
    np.testing.assert_allclose(fitted.anomaly_map(test[0], CTX), e.anomaly_map, **TOL)
    # the map, reconstruction and attention are the mel branch's own
    own = fitted.branch.explain(e.logmel, CTX)
    np.testing.assert_allclose(e.anomaly_map, own.anomaly_map, **TOL)
    np.testing.assert_allclose(e.reconstruction, own.reconstruction, **TOL)
    attention = fitted.temporal_attention(test[0], CTX)
    assert attention.shape == (126,) and attention.max() == pytest.approx(1.0)
    np.testing.assert_allclose(attention, e.extras["attention"], **TOL)
    fitted.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["extra_state"]["selection"]["reason"] == "ensemble: no labelled validation data"
    assert config["extra_state"]["dims"] == {"mel": 4, "wave": 384}
    assert config["extra_state"]["encoder_weights"] == "random"
    assert not set(RUNTIME_KEYS) & set(config["params"])
    loaded = load_system(tmp_path / "model")
    saved, restored = fitted.state_tensors(), loaded.state_tensors()
    assert saved.keys() == restored.keys()
    for key in saved:  # stored tensors come back bit for bit
        assert torch.equal(saved[key], restored[key]), key
    np.testing.assert_allclose(loaded.score(test, CTX), scores, **TOL)
    candidates = fitted.candidate_scores(test, ctx=CTX)
    assert list(candidates) == CANDIDATES
    for name, values in loaded.candidate_scores(test, ctx=CTX).items():
        np.testing.assert_allclose(values, candidates[name], **TOL)
    assert list(loaded.candidate_scores(test, ["gmm"], CTX)) == ["gmm"]
    assert loaded.threshold_ == fitted.threshold_
    assert loaded.selection_ == fitted.selection_
    np.testing.assert_array_equal(loaded.decide(scores), fitted.decide(scores))


def test_explain_score_equals_score(fitted, gearbox):
    _, test = gearbox
    batch = fitted.score(test[:2], CTX)
    for i, clip in enumerate(test[:2]):
        e = fitted.explain(clip, CTX)
        assert e.score == pytest.approx(fitted.score([clip], CTX)[0], rel=1e-6, abs=1e-9)
        # in a batch the float32 encoders round differently (~1e-7), which the detectors amplify
        # a little
        assert e.score == pytest.approx(batch[i], rel=1e-4, abs=1e-9)
    # an in-memory waveform scores like the file it came from
    wave, sr = sf.read(str(test[0].path), dtype="float32")
    assert fitted.score_waveforms([wave], sr, CTX)[0] == pytest.approx(
        fitted.score(test[:1], CTX)[0], rel=1e-5, abs=1e-9
    )


def test_same_seed_gives_the_same_scores(fitted, gearbox):
    """Two fits in one process with the same RunContext seed (the other ran earlier, with
    other work in between) score within 1e-6; another seed gives other scores."""
    train, test = gearbox
    again = _system().fit(train, ctx=CTX)
    np.testing.assert_allclose(again.score(test, CTX), fitted.score(test, CTX), rtol=0, atol=1e-6)
    for name in CANDIDATES:
        np.testing.assert_allclose(
            again.reference_[name], fitted.reference_[name], rtol=1e-6, atol=1e-9
        )
    assert again.selection_ == fitted.selection_
    other = _system().fit(train, ctx=CTX.replace(seed=1))
    assert not np.allclose(other.score(test, CTX), fitted.score(test, CTX), rtol=0, atol=1e-6)


def test_validation_picks_the_best_candidate(gearbox, monkeypatch):
    """Fake candidate scores on the validation clips where GMM separates perfectly and the
    others do not: selection must pick GMM, record every AUC and use GMM's threshold."""
    train, test = gearbox
    labels = np.array([c.label for c in test], dtype=float)
    rng = np.random.default_rng(0)
    fake = {c: rng.standard_normal(len(test)) for c in CANDIDATES}
    fake["gmm"] = labels + 0.01 * rng.standard_normal(len(test))
    fake["recon"] = -labels  # confidently wrong
    seen = []
    system = _system()

    def candidate_scores(clips, names=None, ctx=None):
        seen.append((list(clips), ctx))
        return fake

    monkeypatch.setattr(system, "candidate_scores", candidate_scores)
    system.fit(train, test, ctx=CTX)
    monkeypatch.undo()
    assert seen == [(test, CTX)]  # the validation clips, scored once, in the run's context
    sel = system.selection_
    assert sel["rule"] == "validation" and sel["chosen"] == "gmm"
    assert sel["validation_auc"]["gmm"] == 1.0 and sel["validation_auc"]["recon"] == 0.0
    assert set(sel["validation_auc"]) == set(CANDIDATES)
    assert (sel["n_val_normal"], sel["n_val_anomaly"]) == (
        int((labels == 0).sum()),
        int((labels == 1).sum()),
    )
    assert system.run_["threshold"]["in_sample_threshold"] == pytest.approx(
        gamma_threshold(system.reference_["gmm"]), rel=1e-9, abs=1e-9
    )
    np.testing.assert_allclose(
        system.score(test, CTX), system.candidate_scores(test, ["gmm"], CTX)["gmm"], **TOL
    )
    # validation clips without anomalies fall back to the ensemble, saying why
    normals = [c for c in test if c.label == 0]
    assert system._select(normals, CTX)["reason"].startswith(
        "ensemble: validation data needs normal and anomalous"
    )


def test_no_wave_ablation_needs_no_encoder(gearbox, tmp_path, monkeypatch):
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "no-weights")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)
    train, test = gearbox
    system = _system(encoder="eat_base", use_wave_branch=False, selection="knn").fit(train, ctx=CTX)
    assert system.joint_train_.shape == (len(train), 4)
    assert system.selection_["chosen"] == "knn" and system.selection_["rule"] == "fixed"
    assert system.feature_request().wave is False  # no waveform is even decoded
    assert (
        system.extra_state()["dims"] == {"mel": 4}
        and system.extra_state()["encoder_weights"] is None
    )
    mean, scale = system.scalers_["mel"]
    joint = system.joint_embedding(test, CTX)
    np.testing.assert_allclose(
        joint, (_mel_embedding(system, test) - mean) / scale, rtol=1e-6, atol=1e-9
    )
    np.testing.assert_allclose(
        system.score(test, CTX), system.detectors_["knn"].score(joint), **TOL
    )
    with pytest.raises(ConfigError, match="waveform branch is off"):
        system._get_encoder(CTX)
    system.save(tmp_path / "m")
    np.testing.assert_allclose(
        load_system(tmp_path / "m").score(test, CTX), system.score(test, CTX), **TOL
    )


@pytest.mark.parametrize("config", ["tldiffgan_eat.yaml", "tldiffgan_beats.yaml"])
def test_encoder_swap_without_checkpoint_fails_before_training(
    config, gearbox, tmp_path, monkeypatch
):
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "no-weights")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)
    cfg = read_config(CONFIGS / config)
    system = get_system("tldiffgan", **merge(cfg, {"ldgan": TINY}))
    with pytest.raises(CheckpointError, match="weights not found"):
        system.fit(gearbox[0], ctx=CTX)
    assert system.branch.model is None and system.branch.history_ == []  # nothing was trained


def test_configs_mirror_the_constructor():
    names = sorted(p.name for p in CONFIGS.glob("tldiffgan*.yaml"))
    assert {
        "tldiffgan.yaml",
        "tldiffgan_cpu.yaml",
        "tldiffgan_no_diffusion.yaml",
        "tldiffgan_no_wave.yaml",
        "tldiffgan_no_tmixup.yaml",
        "tldiffgan_random_encoder.yaml",
    } <= set(names)
    cpu = read_config(CONFIGS / "tldiffgan_cpu.yaml")
    expected = {
        "tldiffgan_no_diffusion.yaml": {"latent_diffusion": False},
        "tldiffgan_no_tmixup.yaml": {"tmixup": False},
        "tldiffgan_no_wave.yaml": {"use_wave_branch": False},
        "tldiffgan_random_encoder.yaml": {"encoder": "random"},
        "tldiffgan_eat.yaml": {"encoder": "eat_base"},
        "tldiffgan_beats.yaml": {"encoder": "beats_iter3"},
        "tldiffgan_mel_stats.yaml": {"mel_stats_branch": True},
    }
    for name in names:
        cfg = read_config(CONFIGS / name)
        assert set(cfg) == set(TLDiffGANSystem.param_names()), name
        assert set(cfg["ldgan"]) == set(LDGANSystem.constructor_param_names()), name
        assert not set(RUNTIME_KEYS) & (set(cfg) | set(cfg["ldgan"])), name  # they are flags
        assert get_system("tldiffgan", **cfg).get_params() == cfg
        if name in expected:
            flat, flat_cpu = {**cfg, **cfg["ldgan"]}, {**cpu, **cpu["ldgan"]}
            changed = {k: v for k, v in flat.items() if k != "ldgan" and flat_cpu[k] != v}
            assert changed == expected[name], name
    paper = read_config(CONFIGS / "tldiffgan.yaml")["ldgan"]
    assert (paper["batch_size"], paper["epochs"], paper["learning_rate"]) == (512, 150, 1e-4)
    # the mel branch is LDGAN's own configs, nested: paper-sized and CPU-sized alike
    for gan, ldgan in (("tldiffgan.yaml", "ldgan.yaml"), ("tldiffgan_cpu.yaml", "ldgan_cpu.yaml")):
        own = {k: v for k, v in read_config(CONFIGS / ldgan).items() if k not in THRESHOLD_PARAMS}
        assert read_config(CONFIGS / gan)["ldgan"] == own, gan


def test_ldgan_parameters_nest_and_a_dotted_set_reaches_them():
    """One style for a composite's parts: ``ldgan: {...}`` over LDGAN's defaults, checked key by
    key; ``--set ldgan.epochs=3`` changes that key only; flat LDGAN keys are refused, saying where
    they go."""
    sets = ["ldgan.epochs=3", "ldgan.tmixup=false", "n_neighbors=3"]
    system = get_system("tldiffgan", **load_config("tldiffgan", "tldiffgan_cpu.yaml", sets))
    assert system.ldgan["epochs"] == 3 and system.ldgan["tmixup"] is False
    assert system.n_neighbors == 3 and system.branch.hp == system.ldgan
    assert system.ldgan["ae_channels"] == 32  # the rest as configured
    defaults = {k: v for k, v in LDGANSystem().get_params().items() if k not in THRESHOLD_PARAMS}
    assert get_system("tldiffgan").ldgan == defaults
    with pytest.raises(ConfigError, match=r"ldgan\.epochz"):
        get_system("tldiffgan", ldgan={"epochz": 3})
    with pytest.raises(ConfigError, match=r"ldgan\.threshold_fit"):  # the composite's own key
        get_system("tldiffgan", ldgan={"threshold_fit": "in_sample"})
    with pytest.raises(ConfigError, match=r"tldiffgan: ldgan\.epochs must be in"):
        get_system("tldiffgan", ldgan={"epochs": 0})
    with pytest.raises(ConfigError, match=r"nest them under ldgan .*--set ldgan\.epochs"):
        get_system("tldiffgan", epochs=3)
    with pytest.raises(ConfigError, match="ldgan must be a mapping"):
        get_system("tldiffgan", ldgan=3)


def test_the_resume_fingerprint_holds_the_weights_sha256_never_a_path(gearbox, tmp_path):
    train = gearbox[0]

    def fingerprint(sha: str, ctx: RunContext = CTX, **ldgan) -> str:
        system = _system(encoder="efficientat_mn04", ldgan={**TINY, **ldgan})
        system.encoder_tag_ = {"weights_sha256": sha}  # what fit sets before training
        return system.fingerprint(train, ctx)

    first = fingerprint("a" * 64, CTX.replace(weights_dirs=(tmp_path / "A",)))
    assert first == fingerprint("a" * 64, CTX.replace(weights_dirs=(tmp_path / "B",)))
    assert first != fingerprint("b" * 64)  # other weights: another run
    assert first == fingerprint("a" * 64, epochs=9)  # the part's epochs too: a run may train longer
    assert first != fingerprint("a" * 64, batch_size=2)


def test_a_flat_saved_folder_loads(gearbox, fitted, tmp_path):
    """A model folder written before the LDGAN keys nested (flat keys, ``weights_path``) loads
    and scores as it did."""
    fitted.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    params = cfg["params"]
    cfg["params"] = {
        **{k: v for k, v in params.items() if k != "ldgan"},
        **params["ldgan"],
        "weights_path": "/no/such/machine/mn04_as_mAP_432.pt",
    }
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    loaded = load_system(tmp_path / "m")
    assert loaded.get_params() == fitted.get_params()
    test = gearbox[1][:6]
    np.testing.assert_allclose(loaded.score(test, CTX), fitted.score(test, CTX), **TOL)


@pytest.mark.parametrize(
    "params,key",
    [
        ({"selection": "best"}, "selection"),
        ({"detectors": ["knn", "recon"]}, "detectors"),
        ({"detectors": ["knn", "knn"]}, "detectors"),
        ({"holdout_fraction": 0.7}, "holdout_fraction"),
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"balance_branches": "yes"}, "balance_branches"),
        (
            {"ldgan": {"learning_rate": float("nan")}},
            "ldgan.learning_rate",
        ),  # LDGAN's checks, here too
        ({"ldgan": {"n_steps": 2, "score_step": 3}}, "score_step"),
        ({"no_such_key": 1}, "no_such_key"),
    ],
)
def test_invalid_config_is_rejected_naming_the_key(params, key):
    with pytest.raises(ConfigError, match=key):
        get_system("tldiffgan", **params)


@pytest.mark.parametrize(
    "key",
    [
        "seed",
        "device",
        "progress",
        "cache_dir",
        "checkpoint_dir",
        "checkpoint_every",
        "threads",
        "precision",
        "weights_path",
    ],
)
def test_runtime_settings_are_not_hyperparameters(key):
    with pytest.raises(ConfigError, match=f"{key} is a runtime setting"):
        get_system("tldiffgan", **{key: 1})


def test_fit_needs_two_clips(gearbox):
    with pytest.raises(ConfigError, match="at least 2"):
        _system().fit(gearbox[0][:1], ctx=CTX)


def test_cli_train_with_validation_selects_by_auc(toy_root, tmp_path):
    """`stethoscope train --config tldiffgan_cpu.yaml --val ROOT`: the saved config records the
    validation AUC of every candidate and the argmax is the chosen scorer."""
    sets = [f"ldgan.{k}={v}" for k, v in TINY.items()] + ["encoder=random"]
    rc = cli_main(
        [
            "train",
            "--data",
            str(toy_root),
            "--machine",
            "gearbox",
            "--system",
            "tldiffgan",
            "--config",
            str(CONFIGS / "tldiffgan_cpu.yaml"),
            "--val",
            str(toy_root),
            "--out",
            str(tmp_path / "model"),
            "--quiet",
            "--no-cache",
            "--threads",
            "1",
            "--set",
            *sets,
        ]
    )
    assert rc == 0
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert {k: saved["params"]["ldgan"][k] for k in TINY} == TINY
    sel = saved["extra_state"]["selection"]
    assert sel["rule"] == "validation" and set(sel["validation_auc"]) == set(CANDIDATES)
    assert sel["chosen"] == max(CANDIDATES, key=lambda c: sel["validation_auc"][c])
    system = load_system(tmp_path / "model")
    val = scan(toy_root, machine="gearbox")
    labels = [c.label for c in val]
    for name, scores in system.candidate_scores(val, ctx=CTX).items():
        assert roc_auc_score(labels, scores) == pytest.approx(sel["validation_auc"][name], abs=1e-9)


def test_pretrained_mn04_branch(gearbox, shared):
    mn04 = shared / "weights" / "mn04_as_mAP_432.pt"
    if not mn04.exists():
        pytest.skip(f"shared mn04 weights not found at {mn04}")
    train, test = gearbox
    ctx = CTX.replace(weights_dirs=(mn04.parent,))
    system = get_system("tldiffgan", ldgan={**TINY, "epochs": 1}).fit(train, ctx=ctx)
    extra = system.extra_state()
    assert extra["encoder"] == "efficientat_mn04" and extra["encoder_weights"] == "pretrained"
    assert extra["encoder_weights_sha256"] == W.sha256_of(mn04)
    assert system.joint_train_.shape == (len(train), 4 + 384)
    assert np.isfinite(system.score(test, CTX)).all()


def test_the_mel_stats_branch_joins_the_joint_space_and_round_trips(
    gearbox, tmp_path: Path
) -> None:
    """Our extension (off by default): the 640 per-bin statistics are a third fused branch,
    balanced like the others; scores survive save/load; the ONNX export scores as torch does."""
    train, test = gearbox
    assert _system().mel_stats_branch is False  # the seed's system is unchanged by default
    system = _system(mel_stats_branch=True, threshold_fit="in_sample").fit(train, ctx=CTX)
    dims = {b: m.shape[0] for b, (m, _) in system.scalers_.items()}
    assert dims["stats"] == 5 * 128 and list(dims) == ["mel", "wave", "stats"]
    assert system.joint_train_.shape[1] == sum(dims.values())
    per_branch = [
        system.joint_train_[:, a : a + d].var(axis=0).sum()
        for a, d in zip(np.cumsum([0, *dims.values()])[:-1], dims.values(), strict=True)
    ]
    np.testing.assert_allclose(per_branch, per_branch[0], rtol=1e-6)  # each branch: an equal share
    scores = system.score(test[:4], CTX)
    system.save(tmp_path / "m")
    np.testing.assert_allclose(load_system(tmp_path / "m").score(test[:4], CTX), scores, **TOL)
    pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra")
    from stethoscope.export import export_onnx
    from stethoscope.onnx_runtime import EdgeModel

    assert export_onnx(tmp_path / "m", tmp_path / "onnx", seconds=4.0)["clip_samples"] == 64_000
    edge = EdgeModel(tmp_path / "onnx")
    got = [edge.score_file(c.path).score for c in test[:4]]
    np.testing.assert_allclose(got, scores, rtol=1e-4, atol=1e-6)


def test_scoring_a_clip_opens_it_once(fitted: TLDiffGANSystem, gearbox, tmp_path: Path) -> None:
    """`stethoscope score` with tldiffgan reads each file once: its bytes serve the header check
    and the decode of both branches (log-mel and waveform), with or without the feature cache."""
    from stethoscope.workflows.scoring import score_paths
    from tests.opens import counting_opens

    fitted.save(tmp_path / "model")
    files = [c.path for c in gearbox[1][:2]]
    for cache in (None, tmp_path / "cache", tmp_path / "cache"):  # none, cold, warm
        with counting_opens() as opens:
            score_paths(tmp_path / "model", files, RunContext(progress=False, cache_dir=cache))
        assert [opens.of(f) for f in files] == [1, 1], cache
