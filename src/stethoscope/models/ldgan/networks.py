"""The generator (reverse-step denoiser) and the spectrally normalised discriminator.

Both are 1-D convolutional nets over time (channels = latent channels, or mel bins for the
no-diffusion ablation), fully convolutional so any clip length works.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .diffusion import timestep_embedding

GP_KINDS = ("r1", "wgan-gp")


class ResBlock(nn.Module):
    """conv k3 -> SiLU -> (+ step embedding) -> conv k3, with a residual connection."""

    def __init__(self, channels: int, emb_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, channels)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        r = F.silu(self.conv1(F.silu(h))) + self.emb(emb)[:, :, None]
        return h + self.conv2(F.silu(r))


class Denoiser(nn.Module):
    """G(z_t, t): predicts the noise (``eps``) or the clean latent (``x0``) of a noisy latent."""

    def __init__(
        self, latent_channels: int = 16, channels: int = 64, n_blocks: int = 2, emb_dim: int = 32
    ) -> None:
        super().__init__()
        self.emb_dim = emb_dim
        self.emb_mlp = nn.Sequential(
            nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.conv_in = nn.Conv1d(latent_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(channels, emb_dim) for _ in range(n_blocks))
        self.conv_out = nn.Conv1d(channels, latent_channels, 3, padding=1)

    def forward(self, zt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.emb_mlp(timestep_embedding(t, self.emb_dim))
        h = self.conv_in(zt)
        for block in self.blocks:
            h = block(h, emb)
        return self.conv_out(F.silu(h))


class Discriminator(nn.Module):
    """D(x | cond, t) -> one logit per sample, every weight spectrally normalised.

    With diffusion: x = z_{t-1} (real or generated), cond = z_t, t = step (the denoising-step
    discriminator of DDGAN). Without (ablation): x = a log-mel, no cond, no step.
    """

    def __init__(
        self,
        in_channels: int,
        cond_channels: int = 0,
        channels: int = 64,
        n_down: int = 2,
        use_step: bool = True,
        emb_dim: int = 32,
    ) -> None:
        super().__init__()
        self.use_step, self.emb_dim = use_step, emb_dim
        self.conv_in = spectral_norm(nn.Conv1d(in_channels + cond_channels, channels, 3, padding=1))
        self.step_emb = spectral_norm(nn.Linear(emb_dim, channels)) if use_step else None
        self.down = nn.ModuleList(
            spectral_norm(nn.Conv1d(channels, channels, 4, stride=2, padding=1))
            for _ in range(n_down)
        )
        self.head = spectral_norm(nn.Linear(channels, 1))

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.conv_in(x if cond is None else torch.cat([x, cond], dim=1))
        if self.step_emb is not None:
            assert t is not None, "this discriminator is conditioned on the diffusion step"
            h = h + self.step_emb(timestep_embedding(t, self.emb_dim))[:, :, None]
        h = F.leaky_relu(h, 0.2)
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.2)
        return self.head(h.mean(dim=2)).squeeze(1)


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor | None = None,
    kind: str = "r1",
    weight: float = 10.0,
    generator: torch.Generator | None = None,
    real_logit: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gradient penalty per sample.

    ``r1`` (Mescheder et al. 2018, as DDGAN / StyleGAN): weight / 2 * ||grad D(real)||^2; pass
    ``real_logit`` = D(real) of a ``real`` that requires grad to reuse that forward pass.
    ``wgan-gp`` (Gulrajani et al. 2017): weight * (||grad D(x_hat)|| - 1)^2 on random
    interpolates x_hat of real and fake, drawn on the samples' device.
    """
    if kind == "r1":
        if real_logit is None or not real.requires_grad:
            real = real.detach().requires_grad_(True)
            real_logit = critic(real)
        point, logit = real, real_logit
    elif kind == "wgan-gp":
        if fake is None:
            raise ValueError("wgan-gp needs fake samples")
        u = torch.rand(
            (real.shape[0],) + (1,) * (real.dim() - 1),
            generator=generator,
            device=real.device,
            dtype=real.dtype,
        )
        point = (u * real.detach() + (1 - u) * fake.detach()).requires_grad_(True)
        logit = critic(point)
    else:
        raise ValueError(f"gradient penalty kind must be one of {GP_KINDS}, got {kind!r}")
    (grad,) = torch.autograd.grad(logit.sum(), point, create_graph=True)
    sq_norm = grad.pow(2).flatten(1).sum(dim=1)
    if kind == "r1":
        return 0.5 * weight * sq_norm
    return weight * (sq_norm.add(1e-12).sqrt() - 1.0).pow(2)


def discriminator_loss(
    real_logit: torch.Tensor, fake_logit: torch.Tensor, kind: str
) -> torch.Tensor:
    """Per-sample non-saturating logistic loss (with R1) or Wasserstein critic loss (with
    WGAN-GP)."""
    if kind == "r1":
        return F.softplus(-real_logit) + F.softplus(fake_logit)
    return fake_logit - real_logit


def generator_adv_loss(fake_logit: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample adversarial loss of the generator (same loss family as the discriminator)."""
    return F.softplus(-fake_logit) if kind == "r1" else -fake_logit
