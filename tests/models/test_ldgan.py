"""LDGAN model (`stethoscope.models.ldgan`): diffusion maths, GAN pieces, TMixup, the training
forward (per-sample losses of three optimiser groups, one engine step) and the scoring pass."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from stethoscope.engine import OptimiserSpec, RunContext, train
from stethoscope.models.ldgan import (
    LDGAN,
    Diffusion,
    Discriminator,
    LDGANConfig,
    attention_map,
    gradient_penalty,
    moment_loss,
    tmixup,
)
from stethoscope.models.ldgan.networks import discriminator_loss, generator_adv_loss

SMALL = {
    "n_mels": 12,
    "ae_channels": 8,
    "latent_channels": 4,
    "n_down": 2,
    "gen_channels": 8,
    "gen_blocks": 1,
    "disc_channels": 8,
}
LOSS_KEYS = {"recon", "aux", "ae", "d", "g", "d_adv", "d_gp", "g_pred", "g_stat", "g_adv"}


def _model(seed: int = 0, **kw) -> LDGAN:
    torch.manual_seed(seed)
    return LDGAN(LDGANConfig(**{**SMALL, "n_classes": 3, **kw}))


def _batch(b: int = 6, frames: int = 24, n_mels: int = 12, n_classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n_mels, frames, generator=g)
    return x, F.one_hot(torch.arange(b) % n_classes, n_classes).float()


def _draws(model: LDGAN, b: int, frames: int, n: int, seed: int) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    shape = (b, model.cfg.latent_channels, model.autoencoder.latent_frames(frames))
    return [
        [torch.randn(shape, generator=g) for _ in range(model.cfg.score_step + 1)] for _ in range(n)
    ]


# -- diffusion -------------------------------------------------------------------------
@pytest.mark.parametrize("schedule,lo,hi", [("vp", 0.1, 20.0), ("linear", 0.1, 0.6)])
def test_schedule_monotone_and_q_sample_statistics(schedule: str, lo: float, hi: float) -> None:
    d = Diffusion(4, schedule, lo, hi)
    ab = d.alphas_cumprod
    assert ab[0] == 1.0 and torch.all(ab[1:] < ab[:-1]) and torch.all(ab > 0)
    g = torch.Generator().manual_seed(0)
    z0 = torch.full((20000, 1), 1.5)
    for t in range(1, 5):
        zt = d.q_sample(z0, torch.full((20000,), t), torch.randn(z0.shape, generator=g))
        assert zt.mean().item() == pytest.approx(1.5 * math.sqrt(ab[t]), abs=0.03)
        assert zt.std().item() == pytest.approx(math.sqrt(1 - ab[t]), rel=0.03)
        # the two-stage pair sampler has the same marginal
        _, zt2 = d.q_sample_pairs(z0, torch.full((20000,), t), generator=g)
        assert zt2.mean().item() == pytest.approx(1.5 * math.sqrt(ab[t]), abs=0.03)
        assert zt2.std().item() == pytest.approx(math.sqrt(1 - ab[t]), rel=0.03)


def test_q_sample_pairs_follow_the_generator() -> None:
    d, z0, t = Diffusion(4), torch.randn(5, 2, 3), torch.tensor([1, 2, 3, 4, 1])
    a = d.q_sample_pairs(z0, t, torch.Generator().manual_seed(7))
    b = d.q_sample_pairs(z0, t, torch.Generator().manual_seed(7))
    c = d.q_sample_pairs(z0, t, torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.allclose(a[1], c[1])


def test_posterior_matches_gaussian_bayes() -> None:
    """q(z_{t-1}|z_t,z_0) from the prior N(sqrt(ab_{t-1}) z0, 1-ab_{t-1}) times
    N(z_t; sqrt(a_t) z_{t-1}, b_t)."""
    d = Diffusion(4)
    z0, zt = torch.tensor([[0.7]]), torch.tensor([[-0.4]])
    for t in range(2, 5):
        b, a, ab_prev = (
            d.betas[t].double(),
            1 - d.betas[t].double(),
            d.alphas_cumprod[t - 1].double(),
        )
        precision = 1 / (1 - ab_prev) + a / b
        mean = (ab_prev.sqrt() * 0.7 / (1 - ab_prev) + a.sqrt() * -0.4 / b) / precision
        got_mean, got_var = d.posterior(z0, zt, torch.tensor([t]))
        assert got_mean.item() == pytest.approx(mean.item(), rel=1e-4)
        assert got_var.item() == pytest.approx((1 / precision).item(), rel=1e-4)
    mean, var = d.posterior(z0, zt, torch.tensor([1]))  # last step lands on z0 exactly
    assert mean.item() == pytest.approx(0.7, abs=1e-6) and var.item() == 0
    g = torch.Generator().manual_seed(0)
    noise, z = torch.randn(3, 2, 5, generator=g), torch.randn(3, 2, 5, generator=g)
    t = torch.tensor([1, 2, 3])
    torch.testing.assert_close(
        d.noise_from_z0(z, d.q_sample(z, t, noise), t), noise, atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        d.z0_from_noise(d.q_sample(z, t, noise), t, noise), z, atol=1e-5, rtol=1e-5
    )


# -- GAN pieces ------------------------------------------------------------------------
def test_gradient_penalty_on_known_critics() -> None:
    a = torch.tensor([[3.0, 4.0]])  # ||a|| = 5
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(6, 1, 2, generator=g), torch.randn(6, 1, 2, generator=g)

    def linear(x: torch.Tensor) -> torch.Tensor:
        return (x * a).flatten(1).sum(1)

    r1 = gradient_penalty(linear, real, kind="r1", weight=10)
    assert r1.shape == (6,)
    torch.testing.assert_close(r1, torch.full((6,), 0.5 * 10 * 25.0))
    wgan = gradient_penalty(linear, real, fake, kind="wgan-gp", weight=10, generator=g)
    assert wgan.shape == (6,)
    torch.testing.assert_close(wgan, torch.full((6,), 10 * 16.0))

    def quadratic(x: torch.Tensor) -> torch.Tensor:  # grad = 2x
        return x.pow(2).flatten(1).sum(1)

    expected = 0.5 * 10 * 4 * real.pow(2).flatten(1).sum(1)
    torch.testing.assert_close(
        gradient_penalty(quadratic, real, kind="r1", weight=10), expected, rtol=1e-5, atol=1e-6
    )
    # the reused forward pass of the real samples gives the same penalty
    point = real.clone().requires_grad_(True)
    torch.testing.assert_close(
        gradient_penalty(quadratic, point, kind="r1", weight=10, real_logit=quadratic(point)),
        expected,
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="fake"):
        gradient_penalty(linear, real, kind="wgan-gp")
    with pytest.raises(ValueError, match="kind"):
        gradient_penalty(linear, real, kind="r2")


def test_discriminator_and_generator_losses_are_per_sample() -> None:
    real, fake = torch.tensor([2.0, -1.0, 0.0]), torch.tensor([-3.0, 0.5, 0.0])
    r1 = discriminator_loss(real, fake, "r1")
    assert r1.shape == (3,)
    torch.testing.assert_close(r1, F.softplus(-real) + F.softplus(fake))
    assert r1[2].item() == pytest.approx(2 * math.log(2))
    torch.testing.assert_close(discriminator_loss(real, fake, "wgan-gp"), fake - real)
    torch.testing.assert_close(generator_adv_loss(fake, "r1"), F.softplus(-fake))
    torch.testing.assert_close(generator_adv_loss(fake, "wgan-gp"), -fake)


def test_moment_loss_is_per_sample() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 50, generator=g)
    shifted = x + torch.tensor([0.0, 1.0, 2.0, 3.0])[:, None, None]
    loss = moment_loss(shifted, x)
    assert loss.shape == (4,)
    torch.testing.assert_close(loss, torch.tensor([0.0, 1.0, 4.0, 9.0]), atol=1e-5, rtol=1e-5)


def test_discriminator_weights_have_unit_spectral_norm() -> None:
    torch.manual_seed(0)
    disc = Discriminator(in_channels=4, cond_channels=4, channels=16, n_down=2, use_step=True)
    disc.train()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 4, 20, generator=g), torch.tensor([1, 2, 3])
    for _ in range(30):  # each training forward runs one power iteration
        disc(x, x, t)
    layers = [disc.conv_in, disc.step_emb, disc.head, *disc.down]
    for layer in layers:
        assert hasattr(layer, "parametrizations"), (
            "every discriminator layer is spectrally normalised"
        )
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
    assert att.shape == (64, 40) and att.min() >= 0
    torch.testing.assert_close(att.amax(1), torch.ones(64))
    mix = tmixup(x, att, alpha=0.2, tau_range=(0.2, 0.5), generator=g)
    assert torch.all((mix.tau >= 0.2) & (mix.tau <= 0.5))
    assert torch.all((mix.lam >= 0) & (mix.lam <= 1))
    assert torch.equal(mix.mask, att > mix.tau[:, None])
    assert 0 < mix.mask.float().mean() < 1  # some frames in, some out
    assert sorted(mix.partner.tolist()) == list(range(64))  # a permutation of the batch
    outside = ~mix.mask[:, None, :].expand_as(x)
    assert torch.equal(mix.mixed[outside], x[outside])
    lam = mix.lam[:, None, None]
    expected = lam * x + (1 - lam) * x[mix.partner]
    inside = ~outside
    torch.testing.assert_close(mix.mixed[inside], expected[inside], atol=1e-6, rtol=1e-6)
    onehot = F.one_hot(torch.arange(64) % 3, 3).float()
    soft = mix.mix_targets(onehot)
    torch.testing.assert_close(soft.sum(1), torch.ones(64))
    share = (1 - mix.lam) * mix.mask.float().mean(1)
    torch.testing.assert_close(mix.partner_share, share)
    torch.testing.assert_close(
        soft, (1 - share)[:, None] * onehot + share[:, None] * onehot[mix.partner]
    )


def test_tmixup_lambda_is_beta_distributed() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(50000, 1, 4)
    lam = tmixup(x, torch.ones(50000, 4), alpha=0.2, generator=g).lam.double()
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(
        1 / (4 * (2 * 0.2 + 1)), abs=0.01
    )  # Beta(a, a) variance
    # the shape is tested where float32 rounding (lambda within 6e-8 of 0 or 1) cannot distort it
    lam2 = tmixup(x, torch.ones(50000, 4), alpha=2.0, generator=g).lam.double()
    assert scipy.stats.kstest(lam2.numpy(), "beta", args=(2.0, 2.0)).pvalue > 1e-4


def test_tmixup_draws_follow_the_generator() -> None:
    g = torch.Generator().manual_seed(0)
    x, att = torch.randn(8, 3, 16, generator=g), torch.rand(8, 16, generator=g)
    a = tmixup(x, att, generator=torch.Generator().manual_seed(5))
    b = tmixup(x, att, generator=torch.Generator().manual_seed(5))
    c = tmixup(x, att, generator=torch.Generator().manual_seed(6))
    assert (
        torch.equal(a.mixed, b.mixed)
        and torch.equal(a.lam, b.lam)
        and torch.equal(a.partner, b.partner)
    )
    assert not torch.equal(a.lam, c.lam)


# -- the training forward ----------------------------------------------------------------
@pytest.mark.parametrize(
    "kw,keys",
    [
        ({}, LOSS_KEYS),
        ({"n_classes": 0}, LOSS_KEYS - {"aux"}),
        ({"tmixup": False, "gp_type": "wgan-gp", "prediction": "x0"}, LOSS_KEYS),
        (
            {"latent_diffusion": False},
            {"recon", "aux", "ae", "d", "d_adv", "d_gp", "g_stat", "g_adv"},
        ),
    ],
)
def test_forward_returns_per_sample_losses(kw, keys) -> None:
    model = _model(**kw).train()
    x, targets = _batch()
    losses = model(
        x,
        targets if model.aux_head is not None else None,
        generator=torch.Generator().manual_seed(0),
    )
    assert set(losses) == keys
    for key, value in losses.items():
        assert value.shape == (6,), key
        assert torch.isfinite(value).all(), key
    assert set(model.optimiser_groups()) <= set(losses)
    # each group's total is made of its logged terms
    cfg = model.cfg
    ae = losses["recon"] + (cfg.aux_weight * losses["aux"] if "aux" in losses else 0)
    if cfg.latent_diffusion:
        torch.testing.assert_close(losses["ae"], ae)
        torch.testing.assert_close(
            losses["g"],
            cfg.w_pred * losses["g_pred"]
            + cfg.w_stat * losses["g_stat"]
            + cfg.w_adv * losses["g_adv"],
        )
    else:  # the autoencoder is the generator
        torch.testing.assert_close(
            losses["ae"], ae + cfg.w_stat * losses["g_stat"] + cfg.w_adv * losses["g_adv"]
        )
    torch.testing.assert_close(losses["d"], losses["d_adv"] + losses["d_gp"])


def test_forward_losses_are_per_sample_not_batch_means() -> None:
    """Sample i's reconstruction loss depends on sample i only (without TMixup, which mixes
    clips)."""
    model = _model(tmixup=False).train()
    x, targets = _batch()
    full = model(x, targets, generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[0] += 3.0
    changed = model(x2, targets, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(full["recon"][0], changed["recon"][0])
    torch.testing.assert_close(full["recon"][1:], changed["recon"][1:], rtol=1e-5, atol=1e-6)


def test_forward_is_reproducible_from_the_generator() -> None:
    model = _model()
    x, targets = _batch()
    runs = []
    for seed in (0, 0, 1):
        m = copy.deepcopy(
            model
        ).train()  # the training forward moves latent statistics and power iterations
        runs.append(m(x, targets, generator=torch.Generator().manual_seed(seed)))
    for key in runs[0]:
        torch.testing.assert_close(runs[0][key], runs[1][key], rtol=0, atol=0)
    assert not torch.allclose(runs[0]["g"], runs[2]["g"])


@pytest.mark.parametrize("kw", [{}, {"n_classes": 0}, {"latent_diffusion": False}])
def test_optimiser_groups_partition_the_parameters(kw) -> None:
    model = _model(**kw)
    groups = model.optimiser_groups()
    expected = {"ae", "d"} | ({"g"} if model.cfg.latent_diffusion else set())
    assert set(groups) == expected
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "a parameter is in no group"
    owner = {id(p): g for g, params in groups.items() for p in params}
    assert {owner[id(p)] for p in model.discriminator.parameters()} == {"d"}
    assert {owner[id(p)] for p in model.autoencoder.parameters()} == {"ae"}
    assert {owner[id(p)] for p in model.attention.parameters()} == {"ae"}
    if model.aux_head is not None:
        assert {owner[id(p)] for p in model.aux_head.parameters()} == {"ae"}
    if model.generator is not None:
        assert {owner[id(p)] for p in model.generator.parameters()} == {"g"}


@pytest.mark.parametrize("kw", [{}, {"latent_diffusion": False}])
def test_one_engine_step_moves_each_group_by_its_own_loss(kw) -> None:
    """One batch through `engine.train`: every parameter moves by Adam's first step on the
    gradient of its own group's loss only; a leak of another group's loss would change the
    direction (Adam's first step is lr * sign(grad)) of some parameters."""
    model = _model(**kw)
    before = copy.deepcopy(model)
    x, targets = _batch()
    ctx = RunContext(progress=False, seed=3)
    lr = 1e-3
    train(
        model,
        lambda g: iter([(x, targets)]),
        1,
        OptimiserSpec(lr, (0.5, 0.9)),
        ctx,
        fingerprint="test",
    )

    # the same forward, by hand: the engine hands the model ctx.generator(offset=2) on the device
    ref = before.train()
    losses = ref(x, targets, generator=ctx.generator(offset=2, device="cpu"))
    groups, new_groups = ref.optimiser_groups(), model.optimiser_groups()
    moved = 0
    for name, params in groups.items():
        grads = torch.autograd.grad(
            losses[name].mean(), params, retain_graph=True, allow_unused=True
        )
        for p, grad, new in zip(params, grads, new_groups[name], strict=True):
            if grad is None:  # not reached by its own loss: Adam leaves it alone
                torch.testing.assert_close(new.detach(), p.detach(), rtol=0, atol=0)
                continue
            step = lr * grad / (grad.abs() + 1e-8)  # Adam's bias-corrected first step
            torch.testing.assert_close(
                new.detach(),
                p.detach() - step,
                rtol=0,
                atol=2e-6,
                msg=lambda m, name=name: f"group {name}: {m}",
            )
            moved += int((new.detach() != p.detach()).sum())
    assert moved > 0.9 * sum(p.numel() for p in model.parameters())
    # the training forward also refreshed the latent statistics (a buffer, not a parameter)
    torch.testing.assert_close(model.autoencoder.latent_norm.mean, ref.autoencoder.latent_norm.mean)


def test_engine_step_is_not_a_step_on_the_summed_loss() -> None:
    """One Adam step of every parameter on the sum of the three losses (what a shared
    backward pass would do) lands elsewhere than the engine's own-loss steps, in the
    discriminator and in the generator: the per-group test above can tell them apart."""
    model = _model()
    x, targets = _batch()
    ctx = RunContext(progress=False, seed=3)
    leaky = copy.deepcopy(model).train()
    train(
        model,
        lambda g: iter([(x, targets)]),
        1,
        OptimiserSpec(1e-3, (0.5, 0.9)),
        ctx,
        fingerprint="test",
    )
    losses = leaky(x, targets, generator=ctx.generator(offset=2, device="cpu"))
    opt = torch.optim.Adam(leaky.parameters(), lr=1e-3, betas=(0.5, 0.9))
    sum(losses[g].mean() for g in ("ae", "d", "g")).backward()
    opt.step()
    new = dict(model.named_parameters())
    differs = [
        n for n, p in leaky.named_parameters() if not torch.allclose(p, new[n], atol=2e-6, rtol=0)
    ]
    assert any(n.startswith("discriminator.") for n in differs)
    assert any(n.startswith("generator.") for n in differs)


# -- the scoring pass -------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"score_reduction": "topk", "score_topk": 0.1}])
def test_evaluate_shapes_and_consistency(kw) -> None:
    model = _model(**kw).eval()
    x, _ = _batch(b=3, frames=30)
    out = model.evaluate(x, _draws(model, 3, 30, 2, seed=0))
    assert out.score.shape == (3,)
    assert out.anomaly_map.shape == out.reconstruction.shape == x.shape
    assert out.embedding.shape == (3, model.cfg.latent_channels)
    assert out.attention.shape == (3, 30)
    assert out.attention.min() >= 0
    torch.testing.assert_close(out.attention.amax(dim=1), torch.ones(3))
    torch.testing.assert_close(out.anomaly_map, (out.reconstruction - x).pow(2))
    per_frame = out.anomaly_map.mean(dim=1)
    if model.cfg.score_reduction == "mean":
        torch.testing.assert_close(out.score, per_frame.mean(dim=1))
    else:  # the mean of the top ceil(0.1 * 30) = 3 frames
        torch.testing.assert_close(out.score, per_frame.topk(3, dim=1).values.mean(dim=1))
        assert torch.all(out.score >= per_frame.mean(dim=1))
    # the embedding is the attention-pooled latent of the same pass
    emb, _ = model.embed(model.encode(x, update_stats=False))
    torch.testing.assert_close(out.embedding, emb)


def test_evaluate_equals_itself_for_the_same_draws() -> None:
    model = _model().eval()
    x, _ = _batch(b=3, frames=30)
    state = copy.deepcopy(model.state_dict())
    a = model.evaluate(x, _draws(model, 3, 30, 2, seed=0))
    b = model.evaluate(x, _draws(model, 3, 30, 2, seed=0))
    c = model.evaluate(x, _draws(model, 3, 30, 2, seed=1))
    for name, left, right in zip(a._fields, a, b, strict=True):
        torch.testing.assert_close(
            left, right, rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}"
        )
    assert not torch.allclose(a.reconstruction, c.reconstruction)  # the draws matter
    torch.testing.assert_close(a.embedding, c.embedding)  # the embedding does not depend on them
    # scoring never moves the model: not even in training mode (no latent statistics update)
    model.train()
    model.evaluate(x, _draws(model, 3, 30, 1, seed=0))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(
            value, state[key], rtol=0, atol=0, msg=lambda m, key=key: f"{key}: {m}"
        )


def test_evaluate_averages_the_draws_and_each_sample_alone() -> None:
    model = _model().eval()
    x, _ = _batch(b=3, frames=30)
    draws = _draws(model, 3, 30, 2, seed=0)
    both = model.evaluate(x, draws)
    singles = [model.evaluate(x, [d]).reconstruction for d in draws]
    torch.testing.assert_close(
        both.reconstruction, (singles[0] + singles[1]) / 2, rtol=1e-5, atol=1e-6
    )
    # a clip's outputs do not depend on the rest of its batch
    one = model.evaluate(x[1:2], [[z[1:2] for z in d] for d in draws])
    torch.testing.assert_close(one.score, both.score[1:2], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(one.anomaly_map, both.anomaly_map[1:2], rtol=1e-5, atol=1e-6)


def test_evaluate_needs_draws_unless_it_only_reconstructs() -> None:
    model = _model().eval()
    x, _ = _batch(b=2, frames=20)
    with pytest.raises(ValueError, match="draws"):
        model.evaluate(x)
    with pytest.raises(ValueError, match="draws"):
        model.evaluate(x, [[torch.zeros(2, 4, 5)]])  # score_step=2 needs 3 tensors per draw
    for kw in ({"score_step": 0}, {"latent_diffusion": False}):
        plain = _model(**kw).eval()
        out = plain.evaluate(x)
        torch.testing.assert_close(out.reconstruction, plain.autoencoder(x))
        assert np.isfinite(out.score.numpy()).all()
