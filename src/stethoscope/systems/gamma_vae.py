"""GammaVAE (DCASE 2024 Task 2, Huang & Zhang) as a `System`: same features, training loop,
MSE / MAHALA scores and gamma-fit threshold as the DCASE AE; loss = MSE + kl_weight * KL."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ..models.gamma_vae import LATENT_CHOICES, POSITIVITY, GammaVAE
from .base import register
from .frame_recon import FrameReconstructionSystem


@register
class GammaVAESystem(FrameReconstructionSystem):
    """GammaVAE on stacked log-mel vectors. ``score_latent='mean'`` decodes the latent mean
    (deterministic scores); ``'sample'`` decodes one Gamma sample per vector (random)."""

    name = "gamma_vae"
    description = "Gamma-latent VAE (DCASE 2024 report), MSE / MAHALA scores"
    smoke_params: ClassVar[dict[str, Any]] = {"epochs": 2, "batch_size": 64}
    param_rules: ClassVar[dict[str, Any]] = {
        **FrameReconstructionSystem.param_rules,
        "prior_concentration": "(0, inf)",
        "prior_rate": "(0, inf)",
        "kl_weight": "[0, inf)",
        "positivity": POSITIVITY,
        "score_latent": LATENT_CHOICES,
    }

    # hyperparameters: the constructor's arguments, stored by `_set_params`
    prior_concentration: float
    prior_rate: float
    kl_weight: float
    positivity: str
    score_latent: str

    def __init__(
        self,
        *,
        prior_concentration: float = 1.0,
        prior_rate: float = 1.0,
        kl_weight: float = 1.0,
        positivity: str = "softplus",
        score_latent: str = "mean",
        score_mode: str = "mse",
        epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        n_frames: int = 5,
        n_mels: int = 128,
        log_floor: str = "max",
    ) -> None:
        super().__init__(
            score_mode=score_mode,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            n_frames=n_frames,
            n_mels=n_mels,
            log_floor=log_floor,
        )
        self._set_params(locals())

    def build_model(self, input_dim: int) -> nn.Module:
        return GammaVAE(
            input_dim=input_dim,
            positivity=self.positivity,
            prior_concentration=self.prior_concentration,
            prior_rate=self.prior_rate,
            kl_weight=self.kl_weight,
        )

    def score_latent_choice(self) -> str | None:
        return self.score_latent
