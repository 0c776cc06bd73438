"""A forward diffusion process with few, large steps, as in denoising diffusion GANs.

Indexing: step 0 is the clean latent z_0; steps 1..T are noisier. Arrays have T + 1 entries
with ``betas[0] = 0`` and ``alphas_cumprod[0] = 1``.

Schedules:
* ``vp`` (default, Xiao et al. 2022 "Denoising Diffusion GANs"): the variance-preserving SDE
  discretised at T points, ``alpha_bar(s) = exp(-0.5 s^2 (beta_max - beta_min) - s beta_min)``
  for ``s = k / T`` (k = 1..T, the first point moved to 1e-3 as DDGAN does).
* ``linear``: DDPM's linear betas from ``beta_min`` to ``beta_max`` (both as per-step betas).
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEDULES = ("vp", "linear")


def make_betas(
    n_steps: int, schedule: str = "vp", beta_min: float = 0.1, beta_max: float = 20.0
) -> torch.Tensor:
    """Per-step betas for steps 1..T (length T), float64."""
    if schedule == "vp":
        s = torch.arange(1, n_steps + 1, dtype=torch.float64) / n_steps
        s = s * (1.0 - 1e-3) + 1e-3
        log_alpha_bar = -0.5 * s**2 * (beta_max - beta_min) - s * beta_min
        alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.exp(log_alpha_bar)])
        return 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    if schedule == "linear":
        if not 0 < beta_min <= beta_max < 1:
            raise ValueError(
                f"linear schedule needs 0 < beta_min <= beta_max < 1, got {beta_min}, {beta_max}"
            )
        return torch.linspace(beta_min, beta_max, n_steps, dtype=torch.float64)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] broadcast to ``like``'s shape (batch first)."""
    return values.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class Diffusion(nn.Module):
    """Gaussian forward process q(z_t | z_0) and its posterior q(z_{t-1} | z_t, z_0)."""

    # the schedule's buffers (typed here: nn.Module's attribute lookup is untyped)
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_coef_z0: torch.Tensor
    posterior_coef_zt: torch.Tensor

    def __init__(
        self, n_steps: int = 4, schedule: str = "vp", beta_min: float = 0.1, beta_max: float = 20.0
    ) -> None:
        super().__init__()
        self.n_steps = n_steps
        betas = torch.cat(
            [torch.zeros(1, dtype=torch.float64), make_betas(n_steps, schedule, beta_min, beta_max)]
        )
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        denom = (1.0 - alphas_cumprod).clamp_min(1e-20)
        # index 0 is never used for the posterior; its coefficients are set to identity
        post_var = betas * (1.0 - prev) / denom
        coef_z0 = betas * prev.sqrt() / denom
        coef_zt = (1.0 - prev) * alphas.sqrt() / denom
        coef_z0[0], coef_zt[0], post_var[0] = 1.0, 0.0, 0.0
        for name, value in (
            ("betas", betas),
            ("alphas_cumprod", alphas_cumprod),
            ("posterior_variance", post_var),
            ("posterior_coef_z0", coef_z0),
            ("posterior_coef_zt", coef_zt),
        ):
            self.register_buffer(name, value.float(), persistent=False)

    def q_sample(self, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """z_t = sqrt(alpha_bar_t) z_0 + sqrt(1 - alpha_bar_t) noise."""
        ab = _at(self.alphas_cumprod, t, z0)
        return ab.sqrt() * z0 + (1.0 - ab).sqrt() * noise

    def q_step(self, z_prev: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One forward step: z_t = sqrt(1 - beta_t) z_{t-1} + sqrt(beta_t) noise."""
        beta = _at(self.betas, t, z_prev)
        return (1.0 - beta).sqrt() * z_prev + beta.sqrt() * noise

    def q_sample_pairs(
        self, z0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A real pair (z_{t-1}, z_t) from the forward process, t >= 1 (DDGAN's real sample);
        ``generator`` lives on z0's device."""
        n1 = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        n2 = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
        z_prev = self.q_sample(z0, t - 1, n1)
        return z_prev, self.q_step(z_prev, t, n2)

    def posterior(
        self, z0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(z_{t-1} | z_t, z_0):
        mean = beta_t sqrt(ab_{t-1}) / (1 - ab_t) z_0
               + (1 - ab_{t-1}) sqrt(alpha_t) / (1 - ab_t) z_t,
        var = beta_t (1 - ab_{t-1}) / (1 - ab_t)."""
        mean = _at(self.posterior_coef_z0, t, z0) * z0 + _at(self.posterior_coef_zt, t, zt) * zt
        return mean, _at(self.posterior_variance, t, z0)

    def posterior_sample(
        self, z0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """z_{t-1} ~ q(z_{t-1} | z_t, z_0) with the given standard-normal ``noise`` (no noise at
        t = 1)."""
        mean, var = self.posterior(z0, zt, t)
        return mean + var.sqrt() * noise

    def noise_from_z0(self, z0: torch.Tensor, zt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise that maps z_0 to z_t in one jump: (z_t - sqrt(ab_t) z_0) / sqrt(1 - ab_t)."""
        ab = _at(self.alphas_cumprod, t, z0)
        return (zt - ab.sqrt() * z0) / (1.0 - ab).clamp_min(1e-12).sqrt()

    def z0_from_noise(self, zt: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Inverse of `q_sample` for a predicted noise."""
        ab = _at(self.alphas_cumprod, t, zt)
        return (zt - (1.0 - ab).sqrt() * noise) / ab.sqrt()


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 100.0) -> torch.Tensor:
    """Sinusoidal embedding of integer steps (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, device=t.device, dtype=torch.float32)
        / max(half, 1)
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return torch.nn.functional.pad(emb, (0, dim - 2 * half))
