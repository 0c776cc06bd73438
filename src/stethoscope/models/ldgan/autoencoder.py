"""Convolutional autoencoder of standardised log-mels into a small latent sequence.

Why 1-D convolutions over time with the mel bins as channels: each mel bin has its own
meaning (machine sounds are not shift-invariant in frequency, as the dense DCASE baseline
also assumes), while time is shift-invariant; 1-D convolution is ~10x cheaper than 2-D on
CPU and fully convolutional in time, so clips of any length can be encoded.

Shapes: (batch, n_mels, frames) -> latent (batch, latent_channels, ceil(frames / 2**n_down))
-> (batch, n_mels, frames).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LatentNorm(nn.Module):
    """Per-channel running mean/std of the raw encoder output (updated in training mode).

    The diffusion process adds unit-variance noise, so its latent must have unit scale (the
    latent-diffusion "scale factor"); tracking it by EMA lets the autoencoder train jointly.
    """

    # buffers (typed here: nn.Module's attribute lookup is untyped)
    mean: torch.Tensor
    std: torch.Tensor
    initialised: torch.Tensor

    def __init__(self, channels: int, momentum: float = 0.05) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, raw: torch.Tensor) -> None:
        raw = raw.float()  # bf16 autocast gives bf16 activations; the running statistics stay fp32
        mean = raw.mean(dim=(0, 2))
        std = raw.std(dim=(0, 2)).clamp_min(1e-4) if raw[:, 0].numel() > 1 else self.std
        if not bool(self.initialised):
            self.mean.copy_(mean)
            self.std.copy_(std)
            self.initialised.fill_(True)
        else:
            self.mean.lerp_(mean, self.momentum)
            self.std.lerp_(std, self.momentum)

    def normalise(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.mean[:, None]) / self.std[:, None]

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std[:, None] + self.mean[:, None]


class ConvAutoencoder(nn.Module):
    """Encoder: conv k5 -> n_down x (conv k4 stride 2) -> conv k3 to the latent channels.
    Decoder mirrors it with transposed convolutions. LeakyReLU(0.2) between layers."""

    def __init__(
        self, n_mels: int = 128, channels: int = 64, latent_channels: int = 16, n_down: int = 2
    ) -> None:
        super().__init__()
        self.n_down = n_down
        enc: list[nn.Module] = [nn.Conv1d(n_mels, channels, 5, padding=2), nn.LeakyReLU(0.2)]
        for _ in range(n_down):
            enc += [nn.Conv1d(channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        enc.append(nn.Conv1d(channels, latent_channels, 3, padding=1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [
            nn.Conv1d(latent_channels, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
        ]
        for _ in range(n_down):
            dec += [
                nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1),
                nn.LeakyReLU(0.2),
            ]
        dec.append(nn.Conv1d(channels, n_mels, 5, padding=2))
        self.decoder = nn.Sequential(*dec)
        self.latent_norm = LatentNorm(latent_channels)

    @property
    def stride(self) -> int:
        return 2**self.n_down

    def latent_frames(self, frames: int) -> int:
        return -(-frames // self.stride)

    def encode(self, x: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
        """Standardised log-mel (B, n_mels, T) -> unit-scale latent (B, C, ceil(T / stride)).
        In training mode (and with ``update_stats``) the latent statistics are updated first."""
        pad = self.latent_frames(x.shape[-1]) * self.stride - x.shape[-1]
        if pad:
            x = F.pad(x, (0, pad), mode="replicate")
        raw = self.encoder(x)
        if self.training and update_stats:
            self.latent_norm.update(raw.detach())
        return self.latent_norm.normalise(raw)

    def decode(self, z: torch.Tensor, frames: int) -> torch.Tensor:
        """Latent -> log-mel cropped to ``frames``."""
        return self.decoder(self.latent_norm.denormalise(z))[..., :frames]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Plain reconstruction (no diffusion)."""
        return self.decode(self.encode(x), x.shape[-1])
