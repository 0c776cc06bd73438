"""The scoring network of the `ldgan` system (and TLDiffGAN's mel branch).

`LDGANScorer` wraps a fitted `LDGAN` (shared, not copied) with the per-mel-bin standardisation
of its training log-mels: log-mels in dB are standardised, scored by `LDGAN.evaluate` and the
anomaly map and reconstruction are brought back to dB units. `systems.ldgan_branch.MelBranch` scores
through `evaluate`; ``forward`` runs the same pass with the scoring noise of one clip length
held as buffers (the ONNX export, whose noise is fixed per length).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .model import LDGAN, LDGANEval


class LDGANScorer(nn.Module):
    """log-mel (B, n_mels, T) in dB -> (score (B,) float64, map (B, n_mels, T) in dB² [,
    attention-pooled mel embedding (B, latent_channels)]) with the fixed ``noises`` (per draw,
    score_step + 1 latent-shaped tensors; none without latent diffusion)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        model: LDGAN,
        mel_mean: torch.Tensor,
        mel_std: torch.Tensor,
        noises: Sequence[Sequence[torch.Tensor]] = (),
        embedding: bool = True,
    ) -> None:
        super().__init__()
        self.model, self.embedding, self.n_draws = model, embedding, len(noises)
        self.steps = len(noises[0]) if noises else 0
        self.register_buffer("mean", mel_mean)
        self.register_buffer("std", mel_std)
        for d, draw in enumerate(noises):
            for k, z in enumerate(draw):
                self.register_buffer(f"noise_{d}_{k}", z)

    def standardise(self, logmel: torch.Tensor) -> torch.Tensor:
        return (logmel - self.mean[:, None]) / self.std[:, None]

    def evaluate(
        self, logmel: torch.Tensor, draws: Sequence[Sequence[torch.Tensor]] = ()
    ) -> LDGANEval:
        """`LDGAN.evaluate` of log-mels in dB (maps and reconstruction standardised)."""
        return self.model.evaluate(self.standardise(logmel), draws)

    def map_db(self, amap: torch.Tensor) -> torch.Tensor:
        """A standardised squared-error map in dB²."""
        return amap * self.std[:, None] ** 2

    def to_db(self, standardised: torch.Tensor) -> torch.Tensor:
        """A standardised log-mel (e.g. the reconstruction) in dB."""
        return standardised * self.std[:, None] + self.mean[:, None]

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = logmel.shape[0]
        draws = [
            [getattr(self, f"noise_{d}_{k}")[None].expand(b, -1, -1) for k in range(self.steps)]
            for d in range(self.n_draws)
        ]
        out = self.evaluate(logmel, draws)
        amap = self.map_db(out.anomaly_map)
        if self.embedding:
            return out.score.double(), amap, out.embedding
        return out.score.double(), amap
