"""LDGAN: diffusion maths, gradient penalty, spectral norm, TMixup, and the `ldgan` system."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import soundfile as sf
import torch

from stethoscope.data.clip import Clip
from stethoscope.models.ldgan import Diffusion, Discriminator, attention_map, gradient_penalty, tmixup
from stethoscope.systems import get_system, load_system

TINY = dict(n_frames=48, ae_channels=8, latent_channels=4, gen_channels=8, gen_blocks=1, disc_channels=8,
            batch_size=4, learning_rate=1e-3, progress=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two OpenMP threads on a loaded 2-core machine are ~30x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Clip]:
    """Eight 2 s training clips in two sections (tones + noise) and two test clips."""
    root = tmp_path_factory.mktemp("ldgan_audio")
    rng = np.random.default_rng(0)
    out = []
    for i in range(10):
        seconds = 1.5 if i == 9 else 2.0
        t = np.arange(int(16000 * seconds)) / 16000
        wave = 0.1 * np.sin(2 * np.pi * (300 + 200 * (i % 2)) * t) + 0.01 * rng.standard_normal(len(t))
        if i == 8:  # an "anomaly": a loud high tone in the second half
            wave += 0.2 * np.sin(2 * np.pi * 3000 * t) * (t > 1.0)
        path = root / f"clip_{i}.wav"
        sf.write(path, wave.astype(np.float32), 16000)
        out.append(Clip(path=path, machine="toy", section=f"0{i % 2}", split="train" if i < 8 else "test",
                        label=0 if i != 8 else 1))
    return out


def _system(tmp_path: Path, **kw):
    return get_system("ldgan", cache_dir=str(tmp_path / "cache"), **{**TINY, "epochs": 2, **kw})


# -- diffusion -------------------------------------------------------------------------
@pytest.mark.parametrize("schedule,lo,hi", [("vp", 0.1, 20.0), ("linear", 0.1, 0.6)])
def test_schedule_monotone_and_q_sample_statistics(schedule: str, lo: float, hi: float) -> None:
    d = Diffusion(4, schedule, lo, hi)
    ab = d.alphas_cumprod
    assert ab[0] == 1.0 and torch.all(ab[1:] < ab[:-1]) and torch.all(ab > 0)
    torch.manual_seed(0)
    z0 = torch.full((20000, 1), 1.5)
    for t in range(1, 5):
        zt = d.q_sample(z0, torch.full((20000,), t), torch.randn_like(z0))
        assert zt.mean().item() == pytest.approx(1.5 * math.sqrt(ab[t]), abs=0.03)
        assert zt.std().item() == pytest.approx(math.sqrt(1 - ab[t]), rel=0.03)
        # the two-stage pair sampler has the same marginal
        _, zt2 = d.q_sample_pairs(z0, torch.full((20000,), t))
        assert zt2.mean().item() == pytest.approx(1.5 * math.sqrt(ab[t]), abs=0.03)
        assert zt2.std().item() == pytest.approx(math.sqrt(1 - ab[t]), rel=0.03)


def test_posterior_matches_gaussian_bayes() -> None:
    """q(z_{t-1}|z_t,z_0) from the prior N(sqrt(ab_{t-1}) z0, 1-ab_{t-1}) times N(z_t; sqrt(a_t) z_{t-1}, b_t)."""
    d = Diffusion(4)
    z0, zt = torch.tensor([[0.7]]), torch.tensor([[-0.4]])
    for t in range(2, 5):
        b, a, ab_prev = d.betas[t].double(), 1 - d.betas[t].double(), d.alphas_cumprod[t - 1].double()
        precision = 1 / (1 - ab_prev) + a / b
        mean = (ab_prev.sqrt() * 0.7 / (1 - ab_prev) + a.sqrt() * -0.4 / b) / precision
        got_mean, got_var = d.posterior(z0, zt, torch.tensor([t]))
        assert got_mean.item() == pytest.approx(mean.item(), rel=1e-4)
        assert got_var.item() == pytest.approx((1 / precision).item(), rel=1e-4)
    mean, var = d.posterior(z0, zt, torch.tensor([1]))  # last step lands on z0 exactly
    assert mean.item() == pytest.approx(0.7, abs=1e-6) and var.item() == 0
    noise = torch.randn(3, 2, 5)
    z = torch.randn(3, 2, 5)
    t = torch.tensor([1, 2, 3])
    assert torch.allclose(d.noise_from_z0(z, d.q_sample(z, t, noise), t), noise, atol=1e-4)


# -- GAN pieces ------------------------------------------------------------------------
def test_gradient_penalty_on_known_critics() -> None:
    a = torch.tensor([[3.0, 4.0]])  # ||a|| = 5
    real, fake = torch.randn(6, 1, 2), torch.randn(6, 1, 2)

    def linear(x: torch.Tensor) -> torch.Tensor:
        return (x * a).flatten(1).sum(1)

    assert gradient_penalty(linear, real, kind="r1", weight=10).item() == pytest.approx(0.5 * 10 * 25)
    assert gradient_penalty(linear, real, fake, kind="wgan-gp", weight=10).item() == pytest.approx(10 * 16)

    def quadratic(x: torch.Tensor) -> torch.Tensor:  # grad = 2x
        return x.pow(2).flatten(1).sum(1)

    expected = 0.5 * 10 * (4 * real.pow(2).flatten(1).sum(1)).mean()
    assert gradient_penalty(quadratic, real, kind="r1", weight=10).item() == pytest.approx(expected.item(), rel=1e-5)


def test_discriminator_weights_have_unit_spectral_norm() -> None:
    torch.manual_seed(0)
    disc = Discriminator(in_channels=4, cond_channels=4, channels=16, n_down=2, use_step=True)
    disc.train()
    x, t = torch.randn(3, 4, 20), torch.tensor([1, 2, 3])
    for _ in range(30):  # each training forward runs one power iteration
        disc(x, x, t)
    layers = [disc.conv_in, disc.step_emb, disc.head, *disc.down]
    for layer in layers:
        assert hasattr(layer, "parametrizations"), "every discriminator layer is spectrally normalised"
        weight = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=0.02)
        raw = layer.parametrizations.weight.original.detach().reshape(weight.shape[0], -1)
        assert torch.linalg.matrix_norm(raw, ord=2).item() != pytest.approx(1.0, abs=0.02)


# -- TMixup ----------------------------------------------------------------------------
def test_tmixup_mask_and_mixing() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, 40, generator=g)
    weights = torch.softmax(torch.randn(64, 10, generator=g) * 2, dim=1)
    att = attention_map(weights, 40)
    assert att.shape == (64, 40) and att.min() >= 0 and torch.allclose(att.amax(1), torch.ones(64))
    mix = tmixup(x, att, alpha=0.2, tau_range=(0.2, 0.5), generator=g)
    assert torch.all((mix.tau >= 0.2) & (mix.tau <= 0.5))
    assert torch.all((mix.lam >= 0) & (mix.lam <= 1))
    assert torch.equal(mix.mask, att > mix.tau[:, None])
    assert 0 < mix.mask.float().mean() < 1  # some frames in, some out
    outside = ~mix.mask[:, None, :].expand_as(x)
    assert torch.equal(mix.mixed[outside], x[outside])
    lam = mix.lam[:, None, None]
    expected = lam * x + (1 - lam) * x[mix.partner]
    inside = ~outside
    assert torch.allclose(mix.mixed[inside], expected[inside], atol=1e-6)
    onehot = torch.nn.functional.one_hot(torch.arange(64) % 3, 3).float()
    soft = mix.mix_targets(onehot)
    assert torch.allclose(soft.sum(1), torch.ones(64))
    share = (1 - mix.lam) * mix.mask.float().mean(1)
    assert torch.allclose(soft[torch.arange(64), torch.arange(64) % 3] + 1e-7 >= 1 - share, torch.ones(64).bool())


def test_tmixup_lambda_is_beta_distributed() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(50000, 1, 4)
    lam = tmixup(x, torch.ones(50000, 4), alpha=0.2, generator=g).lam.double()
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * 0.2 + 1)), abs=0.01)  # Beta(a, a) variance
    # the shape is tested where float32 rounding (lambda within 6e-8 of 0 or 1) cannot distort it
    lam2 = tmixup(x, torch.ones(50000, 4), alpha=2.0, generator=g).lam.double()
    assert scipy.stats.kstest(lam2.numpy(), "beta", args=(2.0, 2.0)).pvalue > 1e-4


# -- the system ------------------------------------------------------------------------
def test_end_to_end_scores_maps_embeddings_and_roundtrip(clips, tmp_path) -> None:
    system = _system(tmp_path).fit(clips[:8])
    assert len(system.history_) == 2
    assert {"ae", "aux", "d_adv", "d_gp", "g_pred", "g_stat", "g_adv"} <= set(system.history_[0])
    scores = system.score(clips)
    assert scores.shape == (10,) and np.all(np.isfinite(scores)) and np.all(scores > 0)
    assert system.score([clips[9]])[0] == pytest.approx(scores[9])  # batch composition does not matter
    amap = system.anomaly_map(clips[9])
    assert amap.shape == (128, 47)  # 1.5 s -> 47 frames, scored at full length
    std_map = system.anomaly_map(clips[9], domain="standardised")
    assert np.allclose(amap, std_map * system.mel_std_.numpy()[:, None] ** 2, rtol=1e-4, atol=1e-6)
    assert np.mean(std_map) == pytest.approx(scores[9], rel=1e-4)
    mel, rec = system.reconstruction(clips[9])  # back in dB: its squared difference is the map
    assert mel.shape == rec.shape == (128, 47)
    assert np.allclose((rec - mel) ** 2, amap, rtol=1e-3, atol=1e-4)
    emb = system.mel_embedding(clips[:3])
    assert emb.shape == (3, 4) and np.isfinite(emb).all()
    att = system.temporal_attention(clips[0])
    assert att.shape == (63,) and att.max() == pytest.approx(1.0)
    assert system.threshold_ is not None and np.isfinite(system.threshold_)
    system.save(tmp_path / "model")
    loaded = load_system(tmp_path / "model")
    assert np.array_equal(loaded.score(clips), scores)
    assert np.array_equal(loaded.mel_embedding(clips[:3]), emb)
    assert torch.equal(loaded.mel_mean_, system.mel_mean_)
    assert loaded.history_ == system.history_


def test_topk_reduction_is_at_least_the_mean(clips, tmp_path) -> None:
    system = _system(tmp_path, epochs=1, score_reduction="topk", score_topk=0.1).fit(clips[:8])
    top = system.score(clips[8:])
    system.score_reduction = "mean"
    assert np.all(top >= system.score(clips[8:]))


def test_resume_continues_at_the_right_epoch(clips, tmp_path) -> None:
    reference = _system(tmp_path, epochs=3).fit(clips[:8])
    ckpt = tmp_path / "ckpt"
    first = _system(tmp_path, epochs=2, checkpoint_dir=str(ckpt), checkpoint_every=1).fit(clips[:8])
    assert (ckpt / "checkpoint.json").exists()
    resumed = _system(tmp_path, epochs=3, checkpoint_dir=str(ckpt), checkpoint_every=1).fit(clips[:8])
    assert [h["epoch"] for h in resumed.history_] == [1, 2, 3]
    assert resumed.history_[:2] == first.history_
    # optimiser, RNG and latent statistics were restored: the run equals an uninterrupted one
    assert resumed.history_[2]["ae"] == pytest.approx(reference.history_[2]["ae"], rel=1e-5)
    assert np.allclose(resumed.score(clips[8:]), reference.score(clips[8:]), rtol=1e-5)
    with pytest.raises(Exception, match="does not match"):
        _system(tmp_path, epochs=4, latent_channels=6, checkpoint_dir=str(ckpt)).fit(clips[:8])


@pytest.mark.parametrize("switch", [{"latent_diffusion": False}, {"tmixup": False}, {"gp_type": "wgan-gp",
                                                                                       "prediction": "x0"}])
def test_ablation_switches_run(clips, tmp_path, switch) -> None:
    system = _system(tmp_path, **switch).fit(clips[:8])
    scores = system.score(clips[8:])
    assert np.all(np.isfinite(scores)) and system.anomaly_map(clips[8]).shape == (128, 63)
    assert system.model is not None
    assert (system.model.generator is None) == (switch.get("latent_diffusion") is False)
    assert ("g_pred" in system.history_[0]) == switch.get("latent_diffusion", True)
    assert system.tmixup_active_ == switch.get("tmixup", True)


def test_single_class_turns_tmixup_off_with_a_warning(clips, tmp_path) -> None:
    same = [Clip(path=c.path, machine=c.machine, section="00", split="train", label=0) for c in clips[:4]]
    with pytest.warns(UserWarning, match="TMixup is off"):
        system = _system(tmp_path, epochs=1).fit(same)
    assert not system.tmixup_active_ and system.model.aux_head is None
    assert "aux" not in system.history_[0]


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(Exception, match="score_step"):
        get_system("ldgan", n_steps=4, score_step=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_system("ldgan")
