"""The `Detector` contract (PyOD-like): fit on normal embeddings, score new ones."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Detector(ABC):
    """``fit(X)`` on normal rows, ``score(X)`` returns higher = more anomalous.
    Fitted state ends in ``_``; parameters are constructor arguments.

    Persistence without pickle: ``state()`` gives named arrays, ``get_params()`` JSON-able
    parameters, and ``from_state(state, **params)`` rebuilds an equal detector.
    """

    name: str

    @abstractmethod
    def fit(self, X: np.ndarray) -> Detector: ...

    @abstractmethod
    def score(self, X: np.ndarray) -> np.ndarray: ...

    def train_scores(self) -> np.ndarray:
        """Scores of the training rows (leave-one-out where the method allows it)."""
        raise NotImplementedError(f"detector {self.name!r} does not expose training scores")

    def get_params(self) -> dict[str, Any]:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError(f"detector {self.name!r} cannot be saved")

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], **params: Any) -> Detector:
        raise NotImplementedError(f"detector {cls.name!r} cannot be loaded")
