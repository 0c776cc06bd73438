"""The `Detector` contract (PyOD-like): fit on normal embeddings, score new ones."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Detector(ABC):
    """``fit(X)`` on normal rows, ``score(X)`` returns higher = more anomalous.
    Fitted state ends in ``_``; parameters are constructor arguments."""

    name: str

    @abstractmethod
    def fit(self, X: np.ndarray) -> "Detector":
        ...

    @abstractmethod
    def score(self, X: np.ndarray) -> np.ndarray:
        ...
