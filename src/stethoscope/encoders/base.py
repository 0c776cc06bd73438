"""The `Encoder` contract: a frozen pretrained waveform model that turns clips into vectors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np


class Encoder(ABC):
    """Frozen waveform encoder. ``embed`` takes mono float32 waveforms (any length, at
    ``sample_rate``) and returns one ``dim``-dimensional clip embedding per waveform.

    ``weights`` is "pretrained" when real weights were loaded, "random" otherwise; every
    output that uses an encoder records both ``name`` and ``weights``.
    """

    name: ClassVar[str]
    dim: int
    weights: str = "random"

    @abstractmethod
    def embed(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """(n, dim) float32 clip embeddings."""
