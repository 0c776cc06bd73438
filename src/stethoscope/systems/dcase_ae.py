"""The official DCASE autoencoder baseline as a `System`."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ..models.ae import DcaseAE
from .base import register
from .frame_recon import FrameReconstructionSystem


@register
class DcaseAESystem(FrameReconstructionSystem):
    """DCASE 2023-2025 AE baseline: MSE or MAHALA scores, gamma-fit 90th-percentile threshold."""

    name = "dcase_ae"
    description = "official DCASE autoencoder baseline (MSE / MAHALA)"
    smoke_params: ClassVar[dict[str, Any]] = {"epochs": 2, "batch_size": 64}

    def build_model(self, input_dim: int) -> nn.Module:
        return DcaseAE(input_dim=input_dim)
