"""TLDiffGAN's fusion and scorer choice as torch modules: the maths of `systems.tldiffgan`.

* `fuse`: each branch standardised per dimension, weighted so that every branch carries an
  equal share of the joint space's variance (``balance``), concatenated (float64).
* `logistic_scale` and `kernel_cdf`: a score's position in a candidate's held-out training
  scores, a kernel-smoothed empirical CDF (logistic kernel, Silverman bandwidth).
* `FusionScorer`: fused branches -> the chosen candidate's score, or the ensemble's mean CDF
  position; the system's scoring calls its `fuse` and `combine`.
* `TLDiffGANScorer`: the whole scoring network, log-mel (and EfficientAT mel) in, score and
  the LDGAN branch's anomaly map out (the ONNX export).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from ..detectors.module import DetectorModule, f64
from .ldgan.scorer import LDGANScorer

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def fuse(
    parts: Sequence[torch.Tensor],
    scalers: Sequence[tuple[torch.Tensor, torch.Tensor]],
    balance: bool,
) -> torch.Tensor:
    """(n, joint dim) float64: ``weight * (X - mean) / scale`` per branch, concatenated."""
    dims = [int(mean.shape[0]) for mean, _ in scalers]
    total = sum(dims)
    out = []
    for X, (mean, scale), dim in zip(parts, scalers, dims, strict=True):
        weight = math.sqrt(total / (len(dims) * dim)) if balance else 1.0
        out.append(weight * (X - mean) / scale)
    return torch.cat(out, dim=1)


def logistic_scale(ref: np.ndarray) -> float:
    """Logistic-kernel scale whose kernel std equals Silverman's bandwidth
    0.9 min(std, IQR / 1.34) n^(-1/5); never zero."""
    std = float(ref.std())
    iqr = float(np.subtract(*np.percentile(ref, [75, 25])))
    spread = min(std, iqr / 1.34) if iqr > 0 else std
    bandwidth = 0.9 * spread * len(ref) ** -0.2
    return max(bandwidth * math.sqrt(3) / math.pi, 1e-12 * max(1.0, float(np.abs(ref).max())))


def kernel_cdf(scores: Array, ref: Array, scale: Array | float) -> Array:
    """(n, n_ref): each score's logistic-kernel CDF at each reference score (overflow-free).
    numpy arrays (the system's scoring, float64 as ever) or torch tensors (the graph)."""
    z = (scores[:, None] - ref[None, :]) / scale
    if isinstance(z, torch.Tensor):
        return 0.5 * (1.0 + torch.tanh(0.5 * z))  # type: ignore[return-value]
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class FusionScorer(nn.Module):
    """Branch features (float64, in ``scalers``' order) and the reconstruction score -> score.

    ``names``: the candidates the score needs (the chosen one, or every one for the ensemble);
    ``recon``: the name of the reconstruction candidate; ``detectors``: the others' torch
    detectors (only ``forward`` needs them); ``references``: each candidate's held-out training
    scores (the ensemble's CDFs)."""

    def __init__(
        self,
        scalers: Mapping[str, tuple[np.ndarray, np.ndarray]],
        balance: bool,
        names: Sequence[str],
        recon: str,
        ensemble: bool,
        references: Mapping[str, np.ndarray],
        detectors: Mapping[str, DetectorModule] | None = None,
    ) -> None:
        super().__init__()
        self.branches, self.balance, self.names = list(scalers), balance, list(names)
        self.recon, self.ensemble = recon, ensemble
        for key, (mean, scale) in scalers.items():
            self.register_buffer(f"{key}_mean", f64(mean))
            self.register_buffer(f"{key}_scale", f64(scale))
        self.detectors = nn.ModuleDict(dict(detectors or {}))
        for n in self.names if ensemble else []:
            self.register_buffer(f"ref_{n}", f64(references[n]))
            self.register_buffer(f"ref_scale_{n}", f64(logistic_scale(np.asarray(references[n]))))

    def fuse(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        scalers = [(getattr(self, f"{k}_mean"), getattr(self, f"{k}_scale")) for k in self.branches]
        return fuse(parts, scalers, self.balance)

    def combine(self, scores: Mapping[str, Array]) -> Array:
        """The chosen candidate's score, or the mean CDF position over every candidate; numpy
        scores (the system's scoring) or tensors (``forward``), computed alike."""
        if not self.ensemble:
            return scores[self.names[0]]
        as_numpy = not isinstance(scores[self.names[0]], torch.Tensor)
        cdfs = []
        for n in self.names:
            ref, scale = getattr(self, f"ref_{n}"), getattr(self, f"ref_scale_{n}")
            if as_numpy:
                ref, scale = ref.numpy(), float(scale)
            cdfs.append(kernel_cdf(scores[n], ref, scale).mean(axis=1))
        return sum(cdfs[1:], cdfs[0]) / len(cdfs)

    def forward(self, recon: torch.Tensor, *parts: torch.Tensor) -> torch.Tensor:
        joint = self.fuse(parts)
        return self.combine(
            {n: recon if n == self.recon else self.detectors[n](joint) for n in self.names}
        )


class TLDiffGANScorer(nn.Module):
    """log-mel (B, n_mels, T) [, mn04 mel (B, 128, T')] -> (score (B,) float64, the LDGAN
    branch's anomaly map in dB²). Branches: the LDGAN mel embedding, the waveform encoder's
    embedding (``encoder``) and the per-bin log-mel statistics (``stats``), where present."""

    def __init__(
        self,
        mel: LDGANScorer,
        encoder: nn.Module | None,
        fusion: FusionScorer,
        stats: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.mel, self.encoder, self.fusion, self.stats = mel, encoder, fusion, stats

    def forward(
        self, logmel: torch.Tensor, mn04_mel: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        recon, amap, mel_emb = self.mel(logmel)
        parts = [mel_emb.double()]
        if self.encoder is not None:
            parts.append(self.encoder(mn04_mel).double())
        if self.stats is not None:
            parts.append(self.stats(logmel))
        return self.fusion(recon, *parts), amap
