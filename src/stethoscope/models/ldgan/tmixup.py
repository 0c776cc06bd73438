"""TMixup: attention-guided temporal mixup of log-mels.

A trainable weighted pooling over time (`AttentionPooling`) scores every latent frame; its
softmax, divided by its maximum, is the temporal attention map in [0, 1]. Frames whose
attention exceeds tau ~ U[tau_low, tau_high] form a hard mask; inside it the clip is mixed
with another clip of the batch, lambda ~ Beta(alpha, alpha):

    mixed = x                                   outside the mask
    mixed = lambda * x + (1 - lambda) * x_perm  inside the mask

The pooled latent (the attention-weighted mean of latent frames) is the mel embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class AttentionPooling(nn.Module):
    """Weighted pooling over time: score_t = w^T tanh(W h_t); weights = softmax_t(score)."""

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.score = nn.Sequential(
            nn.Conv1d(channels, hidden, 1), nn.Tanh(), nn.Conv1d(hidden, 1, 1)
        )

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> softmax weights over frames (B, T)."""
        return torch.softmax(self.score(h).squeeze(1), dim=1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled (B, C), weights (B, T))."""
        w = self.weights(h)
        return torch.einsum("bct,bt->bc", h, w), w


def attention_map(weights: torch.Tensor, frames: int) -> torch.Tensor:
    """Softmax weights over latent frames (B, T') -> attention per input frame (B, frames) in
    [0, 1]: each latent frame covers ``ceil(frames / T')`` input frames; divided by the max."""
    stride = -(-frames // weights.shape[1])
    per_frame = weights.repeat_interleave(stride, dim=1)[:, :frames]
    return per_frame / per_frame.amax(dim=1, keepdim=True).clamp_min(1e-12)


def temporal_mask(attention: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Hard mask (B, T): frames whose attention exceeds the clip's threshold tau (B,)."""
    return attention > tau[:, None]


@dataclass
class TMixupBatch:
    """A mixed batch and how it was made (partner index, lambda, tau, mask)."""

    mixed: torch.Tensor  # (B, F, T)
    mask: torch.Tensor  # (B, T) bool
    lam: torch.Tensor  # (B,) weight of the clip itself inside the mask
    tau: torch.Tensor  # (B,)
    partner: torch.Tensor  # (B,) index of the clip mixed in

    @property
    def partner_share(self) -> torch.Tensor:
        """Fraction of each mixed clip that came from its partner: (1 - lambda) * |mask| / T."""
        return (1.0 - self.lam) * self.mask.float().mean(dim=1)

    def mix_targets(self, onehot: torch.Tensor) -> torch.Tensor:
        """Soft class targets (B, K): the clip's label and its partner's, weighted by share."""
        share = self.partner_share[:, None]
        return (1.0 - share) * onehot + share * onehot[self.partner]


def tmixup(
    x: torch.Tensor,
    attention: torch.Tensor,
    alpha: float = 0.2,
    tau_range: tuple[float, float] = (0.2, 0.5),
    generator: torch.Generator | None = None,
) -> TMixupBatch:
    """Mix every clip of ``x`` (B, F, T) with a random partner inside its attention mask;
    every draw on ``x``'s device (``generator`` must live there)."""
    b, device = x.shape[0], x.device
    partner = torch.randperm(b, generator=generator, device=device)
    tau = tau_range[0] + (tau_range[1] - tau_range[0]) * torch.rand(
        b, generator=generator, device=device
    )
    # lambda ~ Beta(alpha, alpha) as a ratio of Gammas: torch's Beta sampler takes no generator
    g1, g2 = _gamma(alpha, b, generator, device), _gamma(alpha, b, generator, device)
    lam = (g1 / (g1 + g2).clamp_min(1e-12)).to(x.dtype)
    mask = temporal_mask(attention, tau)
    inside = mask[:, None, :].to(x.dtype)
    lam_b = lam[:, None, None]
    mixed = x + inside * (1.0 - lam_b) * (x[partner] - x)
    return TMixupBatch(mixed=mixed, mask=mask, lam=lam, tau=tau, partner=partner)


def _gamma(
    concentration: float,
    n: int,
    generator: torch.Generator | None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Gamma(concentration, 1) samples from ``generator`` (torch's sampler takes no generator).

    Marsaglia-Tsang for shape >= 1; for shape < 1 the boost Gamma(a + 1) * U^(1/a).
    """
    a = concentration + 1.0 if concentration < 1.0 else concentration
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.empty(n, dtype=torch.float64, device=device)
    filled = 0
    while filled < n:
        z = torch.randn(2 * n, generator=generator, dtype=torch.float64, device=device)
        u = torch.rand(2 * n, generator=generator, dtype=torch.float64, device=device)
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (
            torch.log(u.clamp_min(1e-300))
            < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-300))
        )
        take = (d * v)[ok][: n - filled]
        out[filled : filled + len(take)] = take
        filled += len(take)
    if concentration < 1.0:
        out = out * torch.rand(n, generator=generator, dtype=torch.float64, device=device) ** (
            1.0 / concentration
        )
    return out
