"""`AuxNet`: a front-end that embeds waveforms and a margin head that classifies them; the
module the engine trains (``forward`` returns per-sample losses)."""

from __future__ import annotations

import torch
from torch import nn

from .losses import MIX_MODES


class AuxNet(nn.Module):
    """``frontend(waves, generator) -> (B, d)`` embeddings; ``head(emb, y_a, y_b, lam, mode)``
    -> per-sample losses (`losses.ArcFace` or `losses.SubClusterAdaCos`)."""

    def __init__(self, frontend: nn.Module, head: nn.Module, mix_mode: str = "none") -> None:
        super().__init__()
        if mix_mode not in MIX_MODES:
            raise ValueError(f"mix_mode must be one of {MIX_MODES}, got {mix_mode!r}")
        self.frontend, self.head, self.mix_mode = frontend, head, mix_mode

    def optimiser_groups(self) -> dict[str, list[nn.Parameter]]:
        """One group of every parameter that trains (frozen layers and fixed centres excluded)."""
        return {"loss": [p for p in self.parameters() if p.requires_grad]}

    def forward(
        self,
        waves: torch.Tensor,
        y_a: torch.Tensor,
        y_b: torch.Tensor,
        lam: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        embeddings = self.frontend(waves, generator)
        with torch.autocast(waves.device.type, enabled=False):
            loss = self.head(embeddings.float(), y_a, y_b, lam.float(), self.mix_mode)
        return {"loss": loss}

    @torch.no_grad()
    def embed(self, waves: torch.Tensor) -> torch.Tensor:
        """Clip embeddings in evaluation mode (no augmentation)."""
        return self.frontend(waves).float()
