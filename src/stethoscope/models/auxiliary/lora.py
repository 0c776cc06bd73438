"""Low-rank adapters (LoRA; Hu et al., "LoRA: low-rank adaptation of large language models",
ICLR 2022) for the pointwise convolutions of a frozen CNN.

A frozen 1x1 convolution ``W`` becomes ``W x + (alpha / rank) * B A x`` with ``A`` (rank x in)
and ``B`` (out x rank) trained. ``B`` starts at zero, so an adapted network starts exactly as the
pretrained one. ASDKit fine-tunes BEATs and EAT this way; on mn04 the 1x1 convolutions (expansion,
projection, squeeze-excitation) hold most of the weights, so they are the ones adapted.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRAConv1x1(nn.Module):
    """A frozen 1x1 ``nn.Conv2d`` plus a trained low-rank update of its weight."""

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.down = nn.Conv2d(
            base.in_channels, rank, 1, stride=(base.stride[0], base.stride[1]), bias=False
        )
        self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.scale = (alpha if alpha is not None else rank) / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))


def add_lora(module: nn.Module, rank: int) -> int:
    """Replace every ungrouped 1x1 convolution inside ``module`` by a `LoRAConv1x1` (in place);
    returns how many were adapted."""
    targets = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1) and child.groups == 1
    ]
    for parent, name, child in targets:
        setattr(parent, name, LoRAConv1x1(child, rank))
    return len(targets)
