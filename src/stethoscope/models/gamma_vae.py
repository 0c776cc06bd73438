"""GammaVAE (Huang & Zhang, DCASE 2024 Task 2 report): a dense VAE with a Gamma latent.

Encoder 640 -> 4 x [Linear 128, BatchNorm1d, ReLU]; two 8-unit heads give the Gamma latent's
parameters: ``fc_mu`` the *concentration* (shape, alpha) and ``fc_var`` the *rate* (beta,
1 / scale), the parameterisation of `torch.distributions.Gamma`. The report names the heads
"mean" and "variance" and squashes them with softmax; softplus is the default here (see
docs/gamma_vae.md). The decoder mirrors the encoder: 8 -> 4 x [Linear 128, BN, ReLU] ->
Linear 640. Training samples the latent with the reparameterised ``Gamma.rsample``; scoring
decodes the latent mean alpha / beta by default so that scores are deterministic.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Gamma

from .ae import mlp_block

POSITIVITY = ("softplus", "softmax")
LATENT_CHOICES = ("mean", "sample")


def kl_gamma(
    concentration_q: torch.Tensor,
    rate_q: torch.Tensor,
    concentration_p: torch.Tensor,
    rate_p: torch.Tensor,
) -> torch.Tensor:
    """Closed-form KL(Gamma(a_q, b_q) || Gamma(a_p, b_p)), shape/rate parameterisation, elementwise.

    KL = (a_q - a_p) psi(a_q) - lnG(a_q) + lnG(a_p) + a_p (ln b_q - ln b_p) + a_q (b_p - b_q) / b_q
    """
    return (
        (concentration_q - concentration_p) * torch.digamma(concentration_q)
        - torch.lgamma(concentration_q)
        + torch.lgamma(concentration_p)
        + concentration_p * (torch.log(rate_q) - torch.log(rate_p))
        + concentration_q * (rate_p - rate_q) / rate_q
    )


class GammaVAELoss(NamedTuple):
    """Per-vector loss terms: mean squared error over the input dims, KL summed over the latent."""

    recon: torch.Tensor
    kl: torch.Tensor


class GammaVAE(nn.Module):
    """Dense VAE whose latent is a product of independent Gammas, with a Gamma prior.

    ``positivity`` maps the heads' outputs to positive parameters: ``softplus`` (default,
    each unit free in (min_param, inf)) or ``softmax`` (the report's choice: the 8 units sum
    to 1, each in (0, 1), so every shape is below 1). ``min_param`` is added in both cases
    so that `Gamma.rsample` and its gradient never see a zero parameter.
    """

    # the prior's buffers (typed here: nn.Module's attribute lookup is untyped)
    prior_concentration: torch.Tensor
    prior_rate: torch.Tensor

    def __init__(
        self,
        input_dim: int = 640,
        hidden: int = 128,
        latent: int = 8,
        n_hidden: int = 4,
        positivity: str = "softplus",
        min_param: float = 1e-3,
        prior_concentration: float = 1.0,
        prior_rate: float = 1.0,
        kl_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if positivity not in POSITIVITY:
            raise ValueError(f"positivity must be one of {POSITIVITY}, got {positivity!r}")
        if prior_concentration <= 0 or prior_rate <= 0:
            raise ValueError("the Gamma prior needs positive concentration and rate")
        self.positivity, self.min_param, self.kl_weight = positivity, min_param, kl_weight
        self.encoder = nn.Sequential(
            *[mlp_block(input_dim if i == 0 else hidden, hidden) for i in range(n_hidden)]
        )
        self.fc_mu = nn.Linear(hidden, latent)  # -> concentration (shape, alpha)
        self.fc_var = nn.Linear(hidden, latent)  # -> rate (beta = 1 / scale)
        dec = [mlp_block(latent if i == 0 else hidden, hidden) for i in range(n_hidden)]
        self.decoder = nn.Sequential(*dec, nn.Linear(hidden, input_dim))
        self.register_buffer(
            "prior_concentration", torch.full((latent,), float(prior_concentration))
        )
        self.register_buffer("prior_rate", torch.full((latent,), float(prior_rate)))

    def _positive(self, h: torch.Tensor) -> torch.Tensor:
        squashed = F.softplus(h) if self.positivity == "softplus" else torch.softmax(h, dim=-1)
        return squashed + self.min_param

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Concentration and rate of the latent Gamma, each (batch, latent)."""
        h = self.encoder(x)
        return self._positive(self.fc_mu(h)), self._positive(self.fc_var(h))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def loss(self, x: torch.Tensor) -> GammaVAELoss:
        """Per-vector reconstruction MSE (report eq. 1) of a reparameterised latent sample and
        the KL to the prior (exact closed form). The Gamma sample draws from the device's
        global generator: torch's Gamma sampler takes no generator (the engine seeds and
        checkpoints that generator)."""
        concentration, rate = self.encode(x)
        recon = self.decode(Gamma(concentration, rate, validate_args=False).rsample())
        kl = kl_gamma(concentration, rate, self.prior_concentration, self.prior_rate).sum(dim=1)
        return GammaVAELoss((recon - x).pow(2).mean(dim=1), kl)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-vector training losses: ``loss`` = recon + kl_weight * kl, and both terms."""
        del generator
        terms = self.loss(x)
        return {
            "loss": terms.recon + self.kl_weight * terms.kl,
            "recon": terms.recon,
            "kl": terms.kl,
        }

    def reconstruct(self, x: torch.Tensor, latent: str = "mean") -> torch.Tensor:
        """Reconstruction for scoring: from the latent mean alpha / beta (deterministic) or a
        sample."""
        if latent not in LATENT_CHOICES:
            raise ValueError(f"latent must be one of {LATENT_CHOICES}, got {latent!r}")
        concentration, rate = self.encode(x)
        if latent == "mean":
            z = concentration / rate
        else:
            z = Gamma(concentration, rate, validate_args=False).sample()
        return self.decode(z)
