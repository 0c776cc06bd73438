"""ArcFace and sub-cluster AdaCos heads: margins, mixup modes, the adaptive scale, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stethoscope.models.auxiliary import ArcFace, SubClusterAdaCos, cosines


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(8, 6, generator=g)
    y_a = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    y_b = torch.tensor([1, 2, 3, 0, 0, 3, 2, 1])
    return emb, y_a, y_b


def test_arcface_margin_lowers_only_the_target_logit(batch: tuple) -> None:
    emb, y, _ = batch
    head = ArcFace(6, 4, scale=30.0, margin=0.5)
    cos = cosines(emb, head.weight)
    logits = head.margin_logits(cos, y)
    plain = 30.0 * cos
    target = torch.arange(len(y)), y
    assert (logits[target] < plain[target]).all()
    expected = 30.0 * torch.cos(torch.acos(cos[target]) + 0.5)
    torch.testing.assert_close(logits[target], expected, rtol=1e-5, atol=1e-5)
    off = torch.ones_like(logits, dtype=torch.bool)
    off[target] = False
    torch.testing.assert_close(logits[off], plain[off])


def test_arcface_without_margin_is_scaled_cosine_cross_entropy(batch: tuple) -> None:
    emb, y, _ = batch
    head = ArcFace(6, 4, scale=10.0, margin=0.0)
    loss = head(emb, y, y, torch.ones(len(y)))
    expected = F.cross_entropy(10.0 * cosines(emb, head.weight), y, reduction="none")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_arcface_fallback_past_pi_is_monotone() -> None:
    head = ArcFace(2, 2, scale=1.0, margin=0.7)
    cos = torch.linspace(-1, 1, 201)[:, None].repeat(1, 2)
    shifted = head.margin_logits(cos, torch.zeros(201, dtype=torch.long))[:, 0]
    assert (shifted.diff() >= 0).all()  # still increasing with the cosine (decreasing with theta)


def test_arcface_mix_modes(batch: tuple) -> None:
    emb, y_a, y_b = batch
    head = ArcFace(6, 4, scale=30.0, margin=0.7)
    lam = torch.linspace(0.1, 0.9, len(y_a))
    cos = cosines(emb, head.weight)
    logits_a, logits_b = head.margin_logits(cos, y_a), head.margin_logits(cos, y_b)

    def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="none")

    arcmix = head(emb, y_a, y_b, lam, "mixup")
    torch.testing.assert_close(arcmix, lam * ce(logits_a, y_a) + (1 - lam) * ce(logits_b, y_b))
    noisy = head(
        emb, y_a, y_b, lam, "noisy_arcmix"
    )  # the margin on y_a only, both terms share the logits
    torch.testing.assert_close(noisy, lam * ce(logits_a, y_a) + (1 - lam) * ce(logits_a, y_b))
    assert not torch.allclose(noisy, arcmix)
    torch.testing.assert_close(
        head(emb, y_a, y_a, torch.ones(len(y_a)), "noisy_arcmix"),
        head(emb, y_a, y_a, torch.ones(len(y_a)), "none"),
    )


def test_adacos_initial_scale_and_class_probability(batch: tuple) -> None:
    emb, y, _ = batch
    head = SubClusterAdaCos(6, 4, sub_clusters=3).eval()
    assert float(head.scale) == pytest.approx(math.sqrt(2) * math.log(4 * 3 - 1))
    assert SubClusterAdaCos.initial_scale(1) > 0 and SubClusterAdaCos.initial_scale(2) > 0
    loss = head(emb, y, y, torch.ones(len(y)))
    p_sub = F.softmax(head.scale * cosines(emb, head.centres), dim=1).view(len(y), 4, 3)
    expected = -torch.log(p_sub.sum(dim=2)[torch.arange(len(y)), y])
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_adacos_adaptive_scale_formula(batch: tuple) -> None:
    emb, y_a, y_b = batch
    head = SubClusterAdaCos(6, 4, sub_clusters=2).train()
    s_old = float(head.scale)
    lam = torch.full((len(y_a),), 0.75)
    cos = cosines(emb, head.centres).double()
    head(emb, y_a, y_b, lam)
    target = 0.75 * F.one_hot(y_a, 4).double() + 0.25 * F.one_hot(y_b, 4).double()
    theta = torch.acos(cos).view(len(y_a), 4, 2).min(dim=2).values
    theta_med = float(torch.median((target * theta).sum(dim=1)))
    b_avg = float(torch.exp(s_old * cos).sum(dim=1).mean())
    expected = math.log(b_avg) / math.cos(min(math.pi / 4, theta_med))
    assert float(head.scale) == pytest.approx(expected, rel=1e-4)
    head.eval()
    head(emb, y_a, y_b, lam)
    assert float(head.scale) == pytest.approx(
        expected, rel=1e-4
    )  # evaluation leaves the scale alone


@pytest.mark.parametrize("trainable", [False, True])
def test_gradients_flow_to_the_embeddings(batch: tuple, trainable: bool) -> None:
    emb, y_a, y_b = batch
    for head in (ArcFace(6, 4), SubClusterAdaCos(6, 4, sub_clusters=2, trainable=trainable)):
        x = emb.clone().requires_grad_(True)
        head(x, y_a, y_b, torch.full((8,), 0.6), "mixup").mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert head.centres.requires_grad is trainable
    assert (head.centres.grad is not None) is trainable


def test_class_centres_are_unit_vectors() -> None:
    for head, k in ((ArcFace(6, 4), 1), (SubClusterAdaCos(6, 4, sub_clusters=3), 3)):
        centres = head.class_centres()
        assert centres.shape == (4, k, 6)
        np.testing.assert_allclose(centres.norm(dim=2).numpy(), 1.0, rtol=1e-6)
