"""The `ldgan` system: training through the engine, scoring, explanations, persistence,
resume, ablation switches and hyperparameter checks (the model itself:
tests/models/test_ldgan.py)."""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext, TrainingInterrupted
from stethoscope.engine import trainer as engine_trainer
from stethoscope.errors import ConfigError
from stethoscope.systems import get_system, load_system
from stethoscope.systems.ldgan import LDGANSystem
from stethoscope.systems.threshold import gamma_threshold
from tests.conftest import write_wav

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
LOSSES = {"recon", "aux", "ae", "d", "g", "d_adv", "d_gp", "g_pred", "g_stat", "g_adv"}
TOL = {"rtol": 1e-6, "atol": 1e-9}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Clip]:
    """Eight 2 s training clips in two sections (tones + noise) and two test clips (one 1.5 s)."""
    root = tmp_path_factory.mktemp("ldgan_audio")
    rng = np.random.default_rng(0)
    out = []
    for i in range(10):
        seconds = 1.5 if i == 9 else 2.0
        t = np.arange(int(16000 * seconds)) / 16000
        wave = 0.1 * np.sin(2 * np.pi * (300 + 200 * (i % 2)) * t) + 0.01 * rng.standard_normal(
            len(t)
        )
        if i == 8:  # an "anomaly": a loud high tone in the second half
            wave += 0.2 * np.sin(2 * np.pi * 3000 * t) * (t > 1.0)
        path = write_wav(root / f"clip_{i}.wav", wave.astype(np.float32))
        out.append(
            Clip(
                path=path,
                machine="toy",
                section=f"0{i % 2}",
                split="train" if i < 8 else "test",
                label=0 if i != 8 else 1,
            )
        )
    return out


def _system(**kw) -> LDGANSystem:
    return get_system("ldgan", **{**TINY, **kw})


@pytest.fixture(scope="module")
def fitted(clips) -> LDGANSystem:
    """Fitted once (seed 0) and shared: tests only read it (`_variant` gives a private copy)."""
    return _system().fit(clips[:8], ctx=CTX)


def _variant(system: LDGANSystem, **changes) -> LDGANSystem:
    """A private copy of a fitted system, with some hyperparameters changed (scoring ones)."""
    other = get_system(system.name, **{**system.get_params(), **changes})
    other.load_extra_state(copy.deepcopy(system.extra_state()))
    other.load_state_tensors({k: v.clone() for k, v in system.state_tensors().items()})
    other.threshold_ = system.threshold_
    return other


def _without_seconds(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def _assert_same_history(
    got: list[dict[str, float]], want: list[dict[str, float]], rel: float
) -> None:
    """Equal per-epoch loss logs (timings aside) within ``rel``, key by key."""
    got, want = _without_seconds(got), _without_seconds(want)
    assert [sorted(h) for h in got] == [sorted(h) for h in want]
    for g, w in zip(got, want, strict=True):
        for key in g:
            assert g[key] == pytest.approx(w[key], rel=rel, abs=1e-9), key


# -- training ------------------------------------------------------------------------
def test_training_history_and_threshold(fitted, clips) -> None:
    history = fitted.branch.history_
    assert len(history) == 2
    for epoch in history:
        assert set(epoch) == LOSSES | {"seconds"}
        assert all(math.isfinite(v) for v in epoch.values())
    assert fitted.branch.model is not None and fitted.branch.model.tmixup_active
    assert fitted.branch.classes_ == ["00|", "01|"]  # two sections, no attributes
    # the threshold is cross-fitted (the default); the in-sample one is recorded beside it
    assert fitted.threshold_ is not None and np.isfinite(fitted.threshold_)
    assert fitted.run_["threshold"]["fit"] == "crossfit"
    assert fitted.run_["threshold"]["in_sample_threshold"] == pytest.approx(
        gamma_threshold(fitted.score(clips[:8], CTX)), rel=1e-6, abs=1e-9
    )
    # the standardisation statistics are those of the training frames
    mels = [fitted.explain(c, CTX).logmel for c in clips[:8]]
    frames = np.concatenate([m.T for m in mels])
    np.testing.assert_allclose(
        fitted.branch.mel_mean_.numpy(), frames.mean(axis=0), rtol=1e-5, atol=1e-4
    )


def test_same_seed_gives_the_same_scores(fitted, clips) -> None:
    """Two fits in one process with the same RunContext seed (the other ran earlier, with
    other work in between) score within 1e-6; another seed gives other scores."""
    again = _system().fit(clips[:8], ctx=CTX)
    np.testing.assert_allclose(again.score(clips, CTX), fitted.score(clips, CTX), rtol=0, atol=1e-6)
    _assert_same_history(again.branch.history_, fitted.branch.history_, rel=1e-6)
    other = _system().fit(clips[:8], ctx=CTX.replace(seed=1))
    assert not np.allclose(other.score(clips, CTX), fitted.score(clips, CTX), rtol=0, atol=1e-6)


# -- scoring and explanations ------------------------------------------------------------
def test_scores_do_not_depend_on_the_batch(fitted, clips) -> None:
    scores = fitted.score(clips, CTX)
    assert scores.shape == (10,) and np.all(np.isfinite(scores)) and np.all(scores > 0)
    np.testing.assert_allclose(fitted.score([clips[9]], CTX), scores[9:], **TOL)
    np.testing.assert_allclose(fitted.score(clips[::-1], CTX), scores[::-1], **TOL)
    # in-memory waveforms score like the files they came from
    waves = [sf.read(str(c.path), dtype="float32")[0] for c in clips[8:]]
    np.testing.assert_allclose(
        fitted.score_waveforms(waves, 16_000, CTX), scores[8:], rtol=1e-5, atol=1e-9
    )


def test_explain_score_equals_score(fitted, clips) -> None:
    scores = fitted.score(clips[8:], CTX)
    for clip, score in zip(clips[8:], scores, strict=True):
        assert fitted.explain(clip, CTX).score == pytest.approx(score, rel=1e-6, abs=1e-9)


def test_explain_map_reconstruction_and_attention(fitted, clips) -> None:
    e = fitted.explain(clips[9], CTX)
    assert (
        e.logmel.shape == e.reconstruction.shape == e.anomaly_map.shape == (128, 47)
    )  # 1.5 s, full length
    assert set(e.extras) == {"attention", "anomaly_map_standardised"}
    std_map = e.extras["anomaly_map_standardised"]
    mel_std = fitted.branch.mel_std_.numpy()[:, None]
    np.testing.assert_allclose(e.anomaly_map, std_map * mel_std**2, rtol=1e-5, atol=1e-9)
    assert np.mean(std_map) == pytest.approx(
        e.score, rel=1e-5, abs=1e-9
    )  # the score is the map's mean
    # the reconstruction is back in dB: its squared difference from the input is the map
    np.testing.assert_allclose(
        (e.reconstruction - e.logmel) ** 2, e.anomaly_map, rtol=1e-3, atol=1e-4
    )
    np.testing.assert_allclose(fitted.anomaly_map(clips[9], CTX), e.anomaly_map, **TOL)
    att = fitted.explain(clips[0], CTX).extras["attention"]
    assert att.shape == (63,) and att.min() >= 0 and att.max() == pytest.approx(1.0)
    assert fitted.has_anomaly_map


def test_mel_embedding(fitted, clips) -> None:
    emb = fitted.mel_embedding(clips[:3], CTX)
    assert emb.shape == (3, 4) and emb.dtype == np.float32 and np.isfinite(emb).all()
    np.testing.assert_allclose(
        fitted.mel_embedding(clips[1:2], CTX), emb[1:2], rtol=1e-5, atol=1e-7
    )
    assert not np.allclose(emb[0], emb[1])  # clips of the two sections embed apart


def test_topk_reduction_is_at_least_the_mean(fitted, clips) -> None:
    top = _variant(fitted, score_reduction="topk", score_topk=0.1)
    top_scores, mean_scores = top.score(clips[8:], CTX), fitted.score(clips[8:], CTX)
    assert np.all(top_scores >= mean_scores) and np.any(top_scores > mean_scores * 1.01)
    # top-k = the mean of the ceil(0.1 * frames) worst frames of the (standardised) map
    e = top.explain(clips[9], CTX)
    per_frame = e.extras["anomaly_map_standardised"].mean(axis=0)
    k = math.ceil(0.1 * len(per_frame))
    assert e.score == pytest.approx(np.sort(per_frame)[-k:].mean(), rel=1e-5, abs=1e-9)
    assert e.score == pytest.approx(top_scores[1], rel=1e-6, abs=1e-9)


def test_feature_cache_gives_the_same_scores(fitted, clips, tmp_path) -> None:
    cached = CTX.replace(cache_dir=tmp_path / "cache")
    plain = fitted.score(clips, CTX)
    np.testing.assert_allclose(fitted.score(clips, cached), plain, **TOL)  # writes the cache
    assert any((tmp_path / "cache").rglob("*"))
    np.testing.assert_allclose(fitted.score(clips, cached), plain, **TOL)  # reads it


# -- persistence ---------------------------------------------------------------------
def test_save_and_load_round_trip(fitted, clips, tmp_path) -> None:
    fitted.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["params"] == fitted.get_params()
    assert not {
        "seed",
        "device",
        "progress",
        "cache_dir",
        "checkpoint_dir",
        "checkpoint_every",
    } & set(config["params"])
    assert config["extra_state"]["tmixup_active"] is True
    loaded = load_system(tmp_path / "model")
    assert isinstance(loaded, LDGANSystem) and loaded.get_params() == fitted.get_params()
    saved, restored = fitted.state_tensors(), loaded.state_tensors()
    assert saved.keys() == restored.keys()
    for key in saved:  # stored tensors come back bit for bit
        assert torch.equal(saved[key], restored[key]), key
    assert loaded.branch.history_ == fitted.branch.history_
    assert loaded.branch.classes_ == fitted.branch.classes_
    assert loaded.threshold_ == fitted.threshold_
    np.testing.assert_allclose(loaded.score(clips, CTX), fitted.score(clips, CTX), **TOL)
    np.testing.assert_allclose(
        loaded.mel_embedding(clips[:3], CTX), fitted.mel_embedding(clips[:3], CTX), **TOL
    )
    np.testing.assert_allclose(
        loaded.anomaly_map(clips[9], CTX), fitted.anomaly_map(clips[9], CTX), **TOL
    )


# -- checkpoints and resume --------------------------------------------------------------
def test_resume_continues_at_the_right_epoch(clips, tmp_path, monkeypatch, capsys) -> None:
    """A 3-epoch run stopped (Ctrl-C) after its epoch-2 checkpoint and resumed equals an
    uninterrupted run: model, optimisers, RNG states and latent statistics were restored."""
    reference = _system(epochs=3).fit(clips[:8], ctx=CTX)
    ckpt = tmp_path / "ckpt"
    ctx = CTX.replace(checkpoint_dir=ckpt, checkpoint_every=1)
    real_save = engine_trainer.save_checkpoint

    def save_then_stop(*args, **kwargs):
        out = real_save(*args, **kwargs)
        if args[4] == 2:  # the epoch just saved
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(engine_trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(TrainingInterrupted) as stopped:
        _system(epochs=3).fit(clips[:8], ctx=ctx)
    monkeypatch.undo()
    assert stopped.value.checkpoint == str(ckpt) and stopped.value.epoch == 2
    saved = json.loads((ckpt / "checkpoint.json").read_text())
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    capsys.readouterr()

    resumed = _system(epochs=3).fit(clips[:8], ctx=ctx.replace(resume=True))
    assert "resume: continuing after epoch 2" in capsys.readouterr().err
    history = resumed.branch.history_
    assert len(history) == 3 and history[:2] == saved["history"]
    _assert_same_history(history, reference.branch.history_, rel=1e-5)
    np.testing.assert_allclose(
        resumed.score(clips[8:], CTX), reference.score(clips[8:], CTX), rtol=1e-5, atol=1e-9
    )
    assert json.loads((ckpt / "checkpoint.json").read_text())["epoch"] == 3


@pytest.mark.parametrize("change", ["none", "hyperparameter", "seed", "clips"])
def test_resume_starts_fresh_when_the_checkpoint_is_for_another_run(
    change, clips, tmp_path, capsys
) -> None:
    ckpt = tmp_path / "ckpt"
    ctx = CTX.replace(checkpoint_dir=ckpt, resume=True)
    params, train = {"epochs": 1}, clips[:8]
    if change != "none":
        _system(**params).fit(train, ctx=ctx.replace(resume=False))
        assert (ckpt / "checkpoint.json").exists()
    if change == "hyperparameter":
        params["latent_channels"] = 6
    elif change == "seed":
        ctx = ctx.replace(seed=1)
    elif change == "clips":
        train = clips[:7]
    capsys.readouterr()
    fresh = _system(**params).fit(train, ctx=ctx)
    err = capsys.readouterr().err
    if change == "none":
        assert f"resume: no checkpoint in {ckpt}; starting fresh" in err
    else:
        assert "made for other hyperparameters, seed or training clips; starting fresh" in err
    assert "continuing" not in err
    # a fresh start trains every epoch and equals a run without checkpoints
    plain = _system(**params).fit(train, ctx=ctx.replace(checkpoint_dir=None, resume=False))
    _assert_same_history(fresh.branch.history_, plain.branch.history_, rel=1e-6)
    assert json.loads((ckpt / "checkpoint.json").read_text())["fingerprint"] == fresh.fingerprint(
        train, ctx
    )


# -- ablations and special cases ------------------------------------------------------------
@pytest.mark.parametrize(
    "switch",
    [{"latent_diffusion": False}, {"tmixup": False}, {"gp_type": "wgan-gp", "prediction": "x0"}],
)
def test_ablation_switches_run(clips, switch) -> None:
    system = _system(**switch).fit(clips[:8], ctx=CTX)
    scores = system.score(clips[8:], CTX)
    assert np.all(np.isfinite(scores))
    assert system.explain(clips[8], CTX).anomaly_map.shape == (128, 63)
    model = system.branch.model
    assert model is not None
    diffusion = switch.get("latent_diffusion", True)
    assert (model.generator is None) == (not diffusion)
    assert set(model.optimiser_groups()) == ({"ae", "d", "g"} if diffusion else {"ae", "d"})
    history = system.branch.history_[0]
    assert ("g_pred" in history) == diffusion and ("g" in history) == diffusion
    assert all(math.isfinite(v) for v in history.values())
    assert model.tmixup_active == switch.get("tmixup", True)
    assert system.extra_state()["tmixup_active"] == switch.get("tmixup", True)
    assert (model.cfg.gp_type, model.cfg.prediction) == (
        switch.get("gp_type", "r1"),
        switch.get("prediction", "eps"),
    )


def test_single_class_turns_tmixup_off_with_a_warning(clips) -> None:
    same = [
        Clip(path=c.path, machine=c.machine, section="00", split="train", label=0)
        for c in clips[:4]
    ]
    with pytest.warns(UserWarning, match="TMixup is off"):
        system = _system(epochs=1).fit(same, ctx=CTX)
    assert not system.branch.model.tmixup_active and system.branch.model.aux_head is None
    assert system.extra_state()["tmixup_active"] is False
    assert "aux" not in system.branch.history_[0]
    with warnings.catch_warnings():  # two classes: no warning
        warnings.simplefilter("error")
        _system(epochs=1).fit(clips[:4], ctx=CTX)


def test_fit_needs_clips() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        _system().fit([], ctx=CTX)


def test_scoring_before_fit_is_an_error(clips) -> None:
    with pytest.raises(RuntimeError, match="fit or load"):
        _system().score(clips[:1], CTX)


# -- hyperparameters --------------------------------------------------------------------------
def test_default_config_builds_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        system = get_system("ldgan")
    assert system.get_params()["epochs"] == 150


@pytest.mark.parametrize(
    "key", ["seed", "device", "progress", "cache_dir", "checkpoint_dir", "checkpoint_every"]
)
def test_runtime_settings_are_not_hyperparameters(key) -> None:
    with pytest.raises(ConfigError, match=f"{key} is a runtime setting"):
        get_system("ldgan", **{key: 1})


def test_model_folder_from_before_the_engine_loads(fitted, clips, tmp_path) -> None:
    """Folders saved when runtime settings were still hyperparameters load without them."""
    fitted.save(tmp_path / "model")
    path = tmp_path / "model" / "config.json"
    config = json.loads(path.read_text())
    config["params"].update(
        seed=0,
        device="cpu",
        progress=True,
        cache_dir=None,
        checkpoint_dir=None,
        checkpoint_every=10,
    )
    path.write_text(json.dumps(config))
    loaded = load_system(tmp_path / "model")
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_allclose(loaded.score(clips[8:], CTX), fitted.score(clips[8:], CTX), **TOL)


@pytest.mark.parametrize(
    "params,key",
    [
        ({"n_steps": 4, "score_step": 5}, "score_step"),
        ({"tau_low": 0.6, "tau_high": 0.5}, "tau_low"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"epochs": 0}, "epochs"),
        ({"n_mels": "128"}, "n_mels"),
        ({"n_frames": 4.5}, "n_frames"),
        ({"tmixup": 1}, "tmixup"),
        ({"schedule": "cosine"}, "schedule"),
        ({"gp_type": "r2"}, "gp_type"),
        ({"score_topk": 1.5}, "score_topk"),
        ({"aux_labels": "machine"}, "aux_labels"),
    ],
)
def test_invalid_config_is_rejected_naming_the_key(params, key) -> None:
    with pytest.raises(ConfigError, match=key):
        get_system("ldgan", **params)


def test_spilled_training_set_learns_the_same_model(clips, fitted, monkeypatch) -> None:
    """Past the feature budget the log-mels are memory-mapped and standardised per batch with
    statistics streamed clip by clip: the same model as from RAM."""
    from stethoscope.features.spill import BUDGET_ENV

    monkeypatch.setenv(BUDGET_ENV, "0")
    spilled = _system().fit(clips[:8], ctx=CTX)
    torch.testing.assert_close(spilled.branch.mel_mean_, fitted.branch.mel_mean_, rtol=0, atol=0)
    torch.testing.assert_close(spilled.branch.mel_std_, fitted.branch.mel_std_, rtol=0, atol=0)
    np.testing.assert_array_equal(spilled.score(clips[8:], CTX), fitted.score(clips[8:], CTX))


def test_bf16_autocast_trains_and_keeps_fp32_statistics(clips) -> None:
    system = _system(epochs=1).fit(clips[:8], ctx=CTX.replace(precision="bf16"))
    norm = system.branch.model.autoencoder.latent_norm
    assert norm.mean.dtype == torch.float32 and norm.std.dtype == torch.float32
    assert np.isfinite(system.score(clips[8:], CTX)).all()
