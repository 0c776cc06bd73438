"""Scoring networks of the embedding systems: a frozen encoder's clip embedding, then a fitted
detector (`embedding_knn`), as torch modules.

`EncoderNet` is an EfficientAT mn04 encoder's network on its front end's mel (the pooled or the
hidden-layer embedding, as the encoder's ``layer`` says); `EmbeddingScorer` feeds it to a
`detectors.module.DetectorModule`. The systems' torch scoring embeds through the same encoder
network (`encoders.embed_decoded`, cached) and scores with the fitted detector, of which
`DetectorModule` is the torch form (equal to 1e-9, tests/detectors/test_module.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..detectors.module import DetectorModule
from ..encoders.efficientat import EfficientATEncoder
from ..errors import ConfigError

EXPORTABLE_ENCODERS = ("efficientat_mn04", "efficientat_mn04_hidden", "random")  # the mn04 networks


def encoder_refusal(owner: str, encoder: str) -> str | None:
    """Why ``owner``'s encoder has no scoring module (one line), or None."""
    if encoder in EXPORTABLE_ENCODERS:
        return None
    return (
        f"{owner} with encoder={encoder!r} cannot be exported to ONNX; exportable encoders: "
        f"{', '.join(EXPORTABLE_ENCODERS)}"
    )


class EncoderNet(nn.Module):
    """mel (B, 128, T') of `export.frontends.efficientat_frontend` -> (B, dim) float32 embedding."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        if not isinstance(encoder, EfficientATEncoder):
            raise ConfigError(encoder_refusal("a system", encoder.name))
        self.net = encoder.model
        self.hidden = encoder.layer == "hidden"

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        out = self.net(mel[:, None])
        return out.hidden if self.hidden else out.embedding


class EmbeddingScorer(nn.Module):
    """mel -> encoder embedding (float32) -> detector score (B,) float64."""

    def __init__(self, encoder: Any, detector: DetectorModule) -> None:
        super().__init__()
        self.encoder = EncoderNet(encoder)
        self.detector = detector

    def forward(self, mn04_mel: torch.Tensor) -> torch.Tensor:
        return self.detector(self.encoder(mn04_mel).double())
