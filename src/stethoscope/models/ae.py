"""The official DCASE 2020-2025 autoencoder: 640-128-128-128-128-8-128-128-128-128-640."""

from __future__ import annotations

import torch
from torch import nn


def mlp_block(n_in: int, n_out: int) -> nn.Sequential:
    """Linear + BatchNorm1d + ReLU, the baseline's hidden layer."""
    return nn.Sequential(nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU())


class DcaseAE(nn.Module):
    """Dense autoencoder on stacked log-mel vectors; BatchNorm + ReLU on every hidden layer,
    the 8-unit bottleneck included, as in the official code."""

    def __init__(
        self, input_dim: int = 640, hidden: int = 128, latent: int = 8, n_hidden: int = 4
    ) -> None:
        super().__init__()
        enc = [mlp_block(input_dim if i == 0 else hidden, hidden) for i in range(n_hidden)]
        self.encoder = nn.Sequential(*enc, mlp_block(hidden, latent))
        dec = [mlp_block(latent if i == 0 else hidden, hidden) for i in range(n_hidden)]
        self.decoder = nn.Sequential(*dec, nn.Linear(hidden, input_dim))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` (eval mode: BatchNorm uses its running statistics)."""
        return self.decoder(self.encoder(x))

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-vector training loss: the mean squared reconstruction error (also the MSE score)."""
        del generator  # nothing random in the AE
        return {"loss": (self.reconstruct(x) - x).pow(2).mean(dim=1)}
