"""LDGAN: autoencoder + latent diffusion + denoising generator + step discriminator.

Reads top to bottom: the pieces, then the three training losses (autoencoder, discriminator,
generator) and the scoring reconstruction. Training order (optimisers, TMixup) lives in
`stethoscope.systems.ldgan`.

With ``latent_diffusion=False`` (ablation) the model is a plain adversarial autoencoder: the
discriminator judges log-mel reconstructions against their inputs and the generator is the
decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder import ConvAutoencoder
from .diffusion import Diffusion
from .networks import Denoiser, Discriminator, discriminator_loss, generator_adv_loss, gradient_penalty
from .tmixup import AttentionPooling, attention_map

PREDICTIONS = ("eps", "x0")


@dataclass(frozen=True)
class LDGANConfig:
    """Architecture and loss settings (see docs/tldiffgan.md for each choice)."""

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
        self.autoencoder = ConvAutoencoder(cfg.n_mels, cfg.ae_channels, cfg.latent_channels, cfg.n_down)
        self.attention = AttentionPooling(cfg.latent_channels)
        self.aux_head = nn.Linear(cfg.latent_channels, cfg.n_classes) if cfg.n_classes > 1 else None
        self.diffusion = Diffusion(cfg.n_steps, cfg.schedule, cfg.beta_min, cfg.beta_max)
        if cfg.latent_diffusion:
            self.generator = Denoiser(cfg.latent_channels, cfg.gen_channels, cfg.gen_blocks)
            self.discriminator = Discriminator(cfg.latent_channels, cfg.latent_channels, cfg.disc_channels,
                                               n_down=1, use_step=True)
        else:
            self.generator = None
            self.discriminator = Discriminator(cfg.n_mels, 0, cfg.disc_channels, n_down=cfg.n_down, use_step=False)

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

    # -- training losses --------------------------------------------------------------
    def autoencoder_losses(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-sample reconstruction MSE of ``x`` and, with class targets (B, K), the auxiliary
        soft cross-entropy of the attention-pooled latent. Also returns the latent and the
        reconstruction for the adversarial terms."""
        z0 = self.encode(x)
        x_rec = self.decode(z0, x.shape[-1])
        out = {"z0": z0, "x_rec": x_rec, "ae": (x_rec - x).pow(2).flatten(1).mean(dim=1)}
        if self.aux_head is not None and targets is not None:
            pooled, _ = self.embed(z0)
            out["aux"] = -(targets * F.log_softmax(self.aux_head(pooled), dim=1)).sum(dim=1)
        return out

    def sample_step(self, z0: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Draw t ~ U{1..T}, a real pair (z_{t-1}, z_t) and the generator's fake z_{t-1}."""
        b = z0.shape[0]
        t = torch.randint(1, self.cfg.n_steps + 1, (b,), generator=generator).to(z0.device)
        z_prev, zt = self.diffusion.q_sample_pairs(z0, t, generator)
        z0_hat, eps_hat = self.predict_z0(zt, t)
        noise = torch.randn(z0.shape, generator=generator).to(z0.device)
        fake_prev = self.diffusion.posterior_sample(z0_hat, zt, t, noise)
        return {"t": t, "zt": zt, "real_prev": z_prev, "fake_prev": fake_prev, "z0_hat": z0_hat, "eps_hat": eps_hat,
                "eps": self.diffusion.noise_from_z0(z0, zt, t)}

    def discriminator_losses(self, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None = None,
                             t: torch.Tensor | None = None,
                             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """GAN loss of D on detached real/fake samples plus its gradient penalty."""
        def critic(v: torch.Tensor) -> torch.Tensor:
            return self.discriminator(v, cond, t)

        fake = fake.detach()
        adv = discriminator_loss(critic(real.detach()), critic(fake), self.cfg.gp_type)
        gp = gradient_penalty(critic, real, fake, self.cfg.gp_type, self.cfg.gp_weight, generator)
        return {"d_adv": adv, "d_gp": gp}

    def generator_losses(self, step: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-sample generator losses on a `sample_step` result: noise prediction (or clean
        latent prediction for ``prediction='x0'``), statistics matching, adversarial."""
        if self.cfg.prediction == "eps":
            pred = (step["eps_hat"] - step["eps"]).pow(2).flatten(1).mean(dim=1)
        else:
            pred = (step["z0_hat"] - step["z0"]).pow(2).flatten(1).mean(dim=1)
        stat = moment_loss(step["fake_prev"], step["real_prev"])
        adv = generator_adv_loss(self.discriminator(step["fake_prev"], step["zt"], step["t"]), self.cfg.gp_type)
        return {"g_pred": pred, "g_stat": stat, "g_adv": adv}

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-sample generator-side losses of a batch (no mixup, no discriminator update):
        ``ae`` and, with latent diffusion, ``g_pred``, ``g_stat``, ``g_adv``."""
        ae = self.autoencoder_losses(x)
        losses = {"ae": ae["ae"]}
        if self.cfg.latent_diffusion:
            step = self.sample_step(ae["z0"].detach(), generator)
            step["z0"] = ae["z0"].detach()
            losses.update(self.generator_losses(step))
        return losses

    # -- scoring ----------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, score_step: int, noises: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Encode, diffuse to ``score_step``, denoise back step by step, decode.

        ``noises`` holds score_step + 1 standard-normal tensors shaped like the latent (the
        caller seeds them so that scoring is deterministic). ``score_step = 0`` or no latent
        diffusion gives the plain autoencoder reconstruction.
        """
        z = self.encode(x)
        if score_step > 0 and self.cfg.latent_diffusion:
            if noises is None or len(noises) < score_step + 1:
                raise ValueError(f"reconstruct needs {score_step + 1} noise tensors for score_step={score_step}")
            b = x.shape[0]
            t = torch.full((b,), score_step, dtype=torch.long, device=x.device)
            z = self.diffusion.q_sample(z, t, noises[0])
            for k in range(score_step, 0, -1):
                t = torch.full((b,), k, dtype=torch.long, device=x.device)
                z0_hat, _ = self.predict_z0(z, t)
                z = self.diffusion.posterior_sample(z0_hat, z, t, noises[k])
        return self.decode(z, x.shape[-1])
