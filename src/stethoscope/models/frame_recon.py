"""The scoring network of the frame-reconstruction systems (`dcase_ae`, `gamma_vae`).

`FrameReconScorer` wraps a fitted reconstruction model (shared, not copied) and the residual
precisions of the MAHALA score. Its pieces are what the system's scoring runs, and its
``forward`` chains them for one batch of equal-length clips (the ONNX export):

* `vectors`: a log-mel (B, n_mels, T) as its T - n + 1 stacked n-frame vectors, in the order
  of `features.extract.stack_frames`;
* `reconstruct`: the model's deterministic reconstruction (GammaVAE: its ``latent`` choice);
* `score_from_stats`: MSE, or MAHALA, the smaller squared Mahalanobis norm of a clip's mean
  residual under the source and target precisions (float64);
* `spread`: per-vector values (V, n, n_mels) averaged over the vectors covering each
  (frame, mel): the anomaly map (squared residual) and the reconstruction.
"""

from __future__ import annotations

from functools import reduce
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class FrameReconScorer(nn.Module):
    """log-mel (B, n_mels, T) -> (score (B,) float64, anomaly map (B, n_mels, T) float32)."""

    def __init__(
        self,
        model: nn.Module,
        n_frames: int,
        score_mode: str,
        precision_source: torch.Tensor | None,
        precision_target: torch.Tensor | None,
        latent: str | None = None,
    ) -> None:
        super().__init__()
        self.net: Any = model
        self.n, self.mode, self.latent = n_frames, score_mode, latent
        self.register_buffer("precision_source", precision_source)
        self.register_buffer("precision_target", precision_target)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of (N, n * n_mels) vectors used for scoring (eval mode)."""
        if self.latent is None:
            return self.net.reconstruct(x)
        return self.net.reconstruct(x, latent=self.latent)

    def vectors(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, V, n * n_mels): vector i holds frames i..i+n-1, frame-major."""
        b, m, t = logmel.shape
        v = t - self.n + 1
        stacked = torch.stack(
            [logmel[:, :, k : k + v] for k in range(self.n)], dim=2
        )  # (B, M, n, V)
        return stacked.permute(0, 3, 2, 1).reshape(b, v, self.n * m)

    def score_from_stats(self, mse: torch.Tensor, mean_diff: torch.Tensor) -> torch.Tensor:
        """Per clip: its mean squared residual (B,) (``mse``) or the MAHALA score of its mean
        residual vector (B, D) (``mahala``), float64."""
        if self.mode == "mse":
            return mse
        d = mean_diff.double()
        source = torch.einsum("nd,de,ne->n", d, self.precision_source, d)
        target = torch.einsum("nd,de,ne->n", d, self.precision_target, d)
        return torch.minimum(source, target)

    def spread(self, per_vector: torch.Tensor) -> torch.Tensor:
        """(B, V, n, n_mels) per-vector values -> (B, n_mels, T): each (frame, mel) the mean
        over the vectors that cover it."""
        n = self.n
        ones = torch.ones_like(per_vector[:, :, 0, :1])
        padded = [F.pad(per_vector[:, :, k], (0, 0, k, n - 1 - k)) for k in range(n)]
        total = reduce(torch.add, padded)  # (B, T, M), summed in k order
        hits = reduce(torch.add, [F.pad(ones, (0, 0, k, n - 1 - k)) for k in range(n)])  # (B, T, 1)
        return (total / hits).transpose(1, 2)

    def residuals(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(vectors - reconstruction, reconstruction), both (B, V, n * n_mels)."""
        x = self.vectors(logmel)
        b, v, d = x.shape
        rec = self.reconstruct(x.reshape(b * v, d)).reshape(b, v, d)
        return x - rec, rec

    def explain(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(score (B,) float64, anomaly map, reconstruction (B, n_mels, T)) from one pass."""
        diff, rec = self.residuals(logmel)
        d64 = diff.double()
        score = self.score_from_stats(d64.pow(2).mean(dim=(1, 2)), d64.mean(dim=1))
        b, v, _ = diff.shape
        amap = self.spread(diff.pow(2).reshape(b, v, self.n, -1))
        return score, amap, self.spread(rec.reshape(b, v, self.n, -1))

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score, amap, _ = self.explain(logmel)
        return score, amap
