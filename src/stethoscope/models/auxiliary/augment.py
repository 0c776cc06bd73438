"""Training augmentations: mixup of waveforms (plain or for Noisy-ArcMix) and SpecAugment.

Mixup draws happen on the CPU with the engine's data generator (the batches function), so
that a run is reproducible from its seed on any device; SpecAugment draws on the model's
generator, on the device where the log-mels live.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.special import betaincinv


class MixedBatch(NamedTuple):
    """Waveforms after mixing and what the heads need: ``waves = lam * x_a + (1 - lam) * x_b``."""

    waves: torch.Tensor  # (B, samples)
    y_a: torch.Tensor  # (B,) class of the first clip of each pair
    y_b: torch.Tensor  # (B,) class of the second clip
    lam: torch.Tensor  # (B,) weight of the first clip


def beta_sample(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws from Beta(alpha, alpha) by inverting its CDF at seeded uniforms (torch has
    no seeded Beta sampler)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    return torch.from_numpy(np.asarray(betaincinv(alpha, alpha, u), dtype=np.float32))


def no_mix(waves: torch.Tensor, labels: torch.Tensor) -> MixedBatch:
    return MixedBatch(waves, labels, labels, torch.ones(len(labels)))


def mixup(
    waves: torch.Tensor, labels: torch.Tensor, alpha: float, generator: torch.Generator
) -> MixedBatch:
    """Each clip mixed with a random partner of the batch, one ``lam ~ Beta(alpha, alpha)``
    per clip (Zhang et al. 2018 draw one per batch; per clip gives the same expectation with
    more variety in small batches)."""
    partner = torch.randperm(len(waves), generator=generator)
    lam = beta_sample(alpha, len(waves), generator)
    mixed = lam[:, None] * waves + (1 - lam[:, None]) * waves[partner]
    return MixedBatch(mixed, labels, labels[partner], lam)


def spec_augment(
    mel: torch.Tensor, n_masks: int, max_freq: int, max_time: int, generator: torch.Generator | None
) -> torch.Tensor:
    """SpecAugment masks (Park et al. 2019) on a (B, n_mels, frames) log-mel: ``n_masks``
    frequency bands of width U[0, max_freq] and ``n_masks`` time spans of width
    U[0, max_time] per clip, set to the clip's mean (the value a standardised input would
    mask with). No time warping. Returns a new tensor."""
    batch, n_freq, n_time = mel.shape
    device = mel.device
    masked = torch.zeros(batch, n_freq, n_time, dtype=torch.bool, device=device)
    for size, max_width, axis in ((n_freq, max_freq, 1), (n_time, max_time, 2)):
        ar = torch.arange(size, device=device)
        for _ in range(n_masks):
            width = torch.randint(
                0, min(max_width, size) + 1, (batch,), generator=generator, device=device
            )
            start = (
                torch.rand(batch, generator=generator, device=device) * (size - width + 1)
            ).long()
            band = (ar[None] >= start[:, None]) & (ar[None] < (start + width)[:, None])
            masked |= band[:, :, None] if axis == 1 else band[:, None, :]
    fill = mel.mean(dim=(1, 2), keepdim=True).expand_as(mel)
    return torch.where(masked, fill, mel)
