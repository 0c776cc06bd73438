"""GammaVAE (DCASE 2024 Task 2, Huang & Zhang) as a `System`: same features, training loop,
MSE / MAHALA scores and gamma-fit threshold as the DCASE AE; loss = MSE + kl_weight * KL."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..models.gamma_vae import LATENT_CHOICES, POSITIVITY, GammaVAE
from .base import register
from .frame_recon import FrameReconstructionSystem


@register
class GammaVAESystem(FrameReconstructionSystem):
    """GammaVAE on stacked log-mel vectors. ``score_latent='mean'`` decodes the latent mean
    (deterministic scores); ``'sample'`` decodes one Gamma sample per vector (random)."""

    name = "gamma_vae"
    description = "Gamma-latent VAE (DCASE 2024 report), MSE / MAHALA scores"

    def __init__(self, *, prior_concentration: float = 1.0, prior_rate: float = 1.0, kl_weight: float = 1.0,
                 positivity: str = "softplus", score_latent: str = "mean", score_mode: str = "mse",
                 epochs: int = 100, batch_size: int = 256, learning_rate: float = 1e-3, n_frames: int = 5,
                 n_mels: int = 128, log_floor: str = "max", seed: int = 0, device: str = "cpu",
                 progress: bool = True, cache_dir: str | None = None) -> None:
        super().__init__(score_mode=score_mode, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         n_frames=n_frames, n_mels=n_mels, log_floor=log_floor, seed=seed, device=device,
                         progress=progress, cache_dir=cache_dir)
        if positivity not in POSITIVITY:
            raise ConfigError(f"positivity must be one of {POSITIVITY}, got {positivity!r}")
        if score_latent not in LATENT_CHOICES:
            raise ConfigError(f"score_latent must be one of {LATENT_CHOICES}, got {score_latent!r}")
        if prior_concentration <= 0 or prior_rate <= 0:
            raise ConfigError(f"prior_concentration and prior_rate must be > 0, got {prior_concentration}, {prior_rate}")
        if kl_weight < 0:
            raise ConfigError(f"kl_weight must be >= 0, got {kl_weight}")
        self.prior_concentration, self.prior_rate, self.kl_weight = prior_concentration, prior_rate, kl_weight
        self.positivity, self.score_latent = positivity, score_latent

    def build_model(self, input_dim: int) -> nn.Module:
        return GammaVAE(input_dim=input_dim, positivity=self.positivity,
                        prior_concentration=self.prior_concentration, prior_rate=self.prior_rate)

    def training_loss(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        terms = model.loss(x)
        return (terms.recon + self.kl_weight * terms.kl).mean()

    def reconstruct(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model.reconstruct(x, latent=self.score_latent)
