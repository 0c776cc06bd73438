"""LDGAN: autoencoder + latent diffusion + denoising generator + step discriminator.

Reads top to bottom: the configuration, the pieces, ``forward`` (the one definition of a
training step: per-sample losses of the three optimiser groups) and ``evaluate`` (the one
scoring pass: score, anomaly map, reconstruction, embedding and attention of a batch).

Optimiser groups (`optimiser_groups`): ``ae`` (autoencoder, attention pooling, auxiliary
head), ``g`` (the denoising generator) and ``d`` (the discriminator). One forward gives
all three losses; the engine steps each group on the gradient of its own loss with
respect to its own parameters, so generator and discriminator are updated simultaneously
from the same batch (docs/tldiffgan.md, "Training step").

With ``latent_diffusion=False`` (ablation) the model is a plain adversarial autoencoder: the
discriminator judges log-mel reconstructions against their inputs, the decoder is the
generator, and there is no ``g`` group.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import ConvAutoencoder
from .diffusion import Diffusion
from .networks import (
    Denoiser,
    Discriminator,
    discriminator_loss,
    generator_adv_loss,
    gradient_penalty,
)
from .tmixup import AttentionPooling, attention_map, tmixup

PREDICTIONS = ("eps", "x0")
REDUCTIONS = ("mean", "topk")


@dataclass(frozen=True)
class LDGANConfig:
    """Architecture, losses, TMixup and scoring settings (docs/tldiffgan.md argues each)."""

    n_mels: int = 128
    ae_channels: int = 64
    latent_channels: int = 16
    n_down: int = 2
    gen_channels: int = 64
    gen_blocks: int = 2
    disc_channels: int = 64
    n_steps: int = 4
    schedule: str = "vp"
    beta_min: float = 0.1
    beta_max: float = 20.0
    prediction: str = "eps"
    x0_clip: float = 5.0
    latent_diffusion: bool = True
    n_classes: int = 0
    gp_type: str = "r1"
    gp_weight: float = 10.0
    w_pred: float = 1.0
    w_stat: float = 1.0
    w_adv: float = 0.1
    aux_weight: float = 0.1
    tmixup: bool = True
    tmixup_alpha: float = 0.2
    tau_low: float = 0.2
    tau_high: float = 0.5
    score_step: int = 2
    score_reduction: str = "mean"
    score_topk: float = 0.1


class LDGANEval(NamedTuple):
    """`LDGAN.evaluate` of a batch (standardised log-mel domain)."""

    score: torch.Tensor  # (B,) reduced per-frame squared error
    anomaly_map: torch.Tensor  # (B, n_mels, T) squared error
    reconstruction: torch.Tensor  # (B, n_mels, T)
    embedding: torch.Tensor  # (B, latent_channels) attention-pooled latent
    attention: torch.Tensor  # (B, T) temporal attention in [0, 1]


def moment_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Statistics matching per sample: squared gaps of per-channel mean and std over time."""
    mean_gap = (fake.mean(dim=2) - real.mean(dim=2)).pow(2).mean(dim=1)
    std_gap = (fake.std(dim=2) - real.std(dim=2)).pow(2).mean(dim=1)
    return mean_gap + std_gap


class LDGAN(nn.Module):
    """All networks of the mel branch. Inputs are standardised log-mels (B, n_mels, T)."""

    def __init__(self, cfg: LDGANConfig) -> None:
        super().__init__()
        if cfg.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {cfg.prediction!r}")
        self.cfg = cfg
        self.autoencoder = ConvAutoencoder(
            cfg.n_mels, cfg.ae_channels, cfg.latent_channels, cfg.n_down
        )
        self.attention = AttentionPooling(cfg.latent_channels)
        self.aux_head = nn.Linear(cfg.latent_channels, cfg.n_classes) if cfg.n_classes > 1 else None
        self.diffusion = Diffusion(cfg.n_steps, cfg.schedule, cfg.beta_min, cfg.beta_max)
        self.generator: Denoiser | None
        if cfg.latent_diffusion:
            self.generator = Denoiser(cfg.latent_channels, cfg.gen_channels, cfg.gen_blocks)
            self.discriminator = Discriminator(
                cfg.latent_channels, cfg.latent_channels, cfg.disc_channels, n_down=1, use_step=True
            )
        else:
            self.generator = None
            self.discriminator = Discriminator(
                cfg.n_mels, 0, cfg.disc_channels, n_down=cfg.n_down, use_step=False
            )

    @property
    def tmixup_active(self) -> bool:
        """TMixup needs classes: the auxiliary head is what trains the attention pooling."""
        return self.cfg.tmixup and self.aux_head is not None

    def optimiser_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {
            "ae": [*self.autoencoder.parameters(), *self.attention.parameters()],
            "d": list(self.discriminator.parameters()),
        }
        if self.aux_head is not None:
            groups["ae"] += list(self.aux_head.parameters())
        if self.generator is not None:
            groups["g"] = list(self.generator.parameters())
        return groups

    # -- pieces -----------------------------------------------------------------------
    def encode(self, x: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
        return self.autoencoder.encode(x, update_stats)

    def decode(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        return self.autoencoder.decode(z, frames)

    def embed(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention-pooled latent (the mel embedding) and softmax weights over latent frames."""
        return self.attention(z)

    def frame_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Temporal attention map (B, T) in [0, 1] of standardised log-mels."""
        _, weights = self.embed(self.encode(x, update_stats=False))
        return attention_map(weights, x.shape[-1])

    def predict_z0(self, zt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generator output as (clean latent, noise), whichever it predicts."""
        assert self.generator is not None
        out = self.generator(zt, t)
        if self.cfg.prediction == "eps":
            z0 = self.diffusion.z0_from_noise(zt, t, out).clamp(-self.cfg.x0_clip, self.cfg.x0_clip)
            return z0, out
        return out, self.diffusion.noise_from_z0(out, zt, t)

    def sample_step(
        self, z0: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw t ~ U{1..T}, a real pair (z_{t-1}, z_t) and the generator's fake z_{t-1};
        every draw on z0's device."""
        b = z0.shape[0]
        t = torch.randint(1, self.cfg.n_steps + 1, (b,), generator=generator, device=z0.device)
        z_prev, zt = self.diffusion.q_sample_pairs(z0, t, generator)
        z0_hat, eps_hat = self.predict_z0(zt, t)
        noise = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        fake_prev = self.diffusion.posterior_sample(z0_hat, zt, t, noise)
        return {
            "t": t,
            "zt": zt,
            "real_prev": z_prev,
            "fake_prev": fake_prev,
            "z0_hat": z0_hat,
            "eps_hat": eps_hat,
            "eps": self.diffusion.noise_from_z0(z0, zt, t),
            "z0": z0,
        }

    def _critic_losses(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        cond: torch.Tensor | None,
        t: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample D loss (GAN loss + gradient penalty) and the fake side's adversarial loss.
        D judges ``fake`` once; the engine keeps each loss's gradient to its own group."""
        cfg = self.cfg

        def critic(v: torch.Tensor) -> torch.Tensor:
            return self.discriminator(v, cond, t)

        real_in = real.detach().requires_grad_(cfg.gp_type == "r1")
        real_logit, fake_logit = critic(real_in), critic(fake)
        gp = gradient_penalty(
            critic, real_in, fake, cfg.gp_type, cfg.gp_weight, generator, real_logit=real_logit
        )
        d_adv = discriminator_loss(real_logit, fake_logit, cfg.gp_type)
        return {
            "d": d_adv + gp,
            "d_adv": d_adv,
            "d_gp": gp,
            "adv": generator_adv_loss(fake_logit, cfg.gp_type),
        }

    # -- the training step ------------------------------------------------------------
    def _tmixup(
        self, x: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """TMixup: the batch mixed inside its frame-attention masks, the targets likewise."""
        cfg = self.cfg
        with torch.no_grad():
            attention = self.frame_attention(x)
        mix = tmixup(x, attention, cfg.tmixup_alpha, (cfg.tau_low, cfg.tau_high), generator)
        return mix.mixed, mix.mix_targets(targets)

    def forward(
        self,
        x: torch.Tensor,
        targets: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample losses of one training batch: ``ae``, ``d`` and (with latent diffusion)
        ``g`` are the optimiser groups' totals; the other keys are their terms, for logs.

        ``targets`` (B, n_classes) are one-hot auxiliary classes; with TMixup active the
        batch is first mixed inside its attention masks and the targets mixed likewise (the
        reconstruction target of a mixed clip is the mixed clip itself).
        """
        cfg = self.cfg
        if self.tmixup_active and targets is not None:
            x, targets = self._tmixup(x, targets, generator)
        z0 = self.encode(x)
        x_rec = self.decode(z0, x.shape[-1])
        recon = (x_rec - x).pow(2).flatten(1).mean(dim=1)
        out = {"recon": recon}
        ae = recon
        if self.aux_head is not None and targets is not None:
            pooled, _ = self.embed(z0)
            out["aux"] = -(targets * F.log_softmax(self.aux_head(pooled), dim=1)).sum(dim=1)
            ae = ae + cfg.aux_weight * out["aux"]
        if not cfg.latent_diffusion:  # adversarial autoencoder: D judges reconstructions
            critic = self._critic_losses(x, x_rec, None, None, generator)
            stat = moment_loss(x_rec, x)
            out.update(
                ae=ae + cfg.w_stat * stat + cfg.w_adv * critic["adv"],
                d=critic["d"],
                d_adv=critic["d_adv"],
                d_gp=critic["d_gp"],
                g_stat=stat,
                g_adv=critic["adv"],
            )
            return out
        # the diffusion part does not move the latent
        step = self.sample_step(z0.detach(), generator)
        critic = self._critic_losses(
            step["real_prev"], step["fake_prev"], step["zt"], step["t"], generator
        )
        if cfg.prediction == "eps":
            pred = (step["eps_hat"] - step["eps"]).pow(2).flatten(1).mean(dim=1)
        else:
            pred = (step["z0_hat"] - step["z0"]).pow(2).flatten(1).mean(dim=1)
        stat = moment_loss(step["fake_prev"], step["real_prev"])
        g = cfg.w_pred * pred + cfg.w_stat * stat + cfg.w_adv * critic["adv"]
        out.update(
            ae=ae,
            d=critic["d"],
            g=g,
            d_adv=critic["d_adv"],
            d_gp=critic["d_gp"],
            g_pred=pred,
            g_stat=stat,
            g_adv=critic["adv"],
        )
        return out

    # -- the scoring pass ---------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, draws: Sequence[Sequence[torch.Tensor]] = ()) -> LDGANEval:
        """Encode once; pool the latent (embedding, attention); per noise draw, diffuse the
        latent to ``score_step``, denoise back step by step and decode; average the draws'
        reconstructions and compare with the input.

        Each draw holds score_step + 1 standard-normal tensors shaped like the latent (the
        caller fixes them so that scores are deterministic). ``score_step = 0`` or no latent
        diffusion gives the plain autoencoder reconstruction and needs no draws.
        """
        cfg = self.cfg
        z0 = self.encode(x, update_stats=False)
        embedding, weights = self.embed(z0)
        if cfg.score_step > 0 and cfg.latent_diffusion:
            if not draws or any(len(d) < cfg.score_step + 1 for d in draws):
                raise ValueError(
                    f"evaluate needs draws of {cfg.score_step + 1} noise tensors "
                    f"for score_step={cfg.score_step}"
                )
            recs = (self.decode(self._denoise(z0, d), x.shape[-1]) for d in draws)
            rec = functools.reduce(torch.add, recs) / len(draws)
        else:
            rec = self.decode(z0, x.shape[-1])
        amap = (rec - x).pow(2)
        per_frame = amap.mean(dim=1)
        if cfg.score_reduction == "mean":
            score = per_frame.mean(dim=1)
        else:
            k = max(1, math.ceil(cfg.score_topk * per_frame.shape[1]))
            score = per_frame.topk(k, dim=1).values.mean(dim=1)
        return LDGANEval(score, amap, rec, embedding, attention_map(weights, x.shape[-1]))

    def _denoise(self, z0: torch.Tensor, noises: Sequence[torch.Tensor]) -> torch.Tensor:
        """Jump the clean latent to ``score_step`` with ``noises[0]``, then walk back to step 0."""
        b, step = z0.shape[0], self.cfg.score_step
        z = self.diffusion.q_sample(
            z0, torch.full((b,), step, dtype=torch.long, device=z0.device), noises[0]
        )
        for k in range(step, 0, -1):
            t = torch.full((b,), k, dtype=torch.long, device=z0.device)
            z0_hat, _ = self.predict_z0(z, t)
            z = self.diffusion.posterior_sample(z0_hat, z, t, noises[k])
        return z
