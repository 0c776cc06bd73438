"""Outlier detectors on embeddings and their registry."""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import ConfigError
from .base import Detector
from .embedding import DETECTORS, GMM, KNN, LOF, SOS, Mahalanobis, TrainingSetDetector


def get_detector(name: str, **params: Any) -> Detector:
    """Build a detector by name (``knn``, ``lof``, ``gmm``, ``sos``, ``mahalanobis``)."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    cls = DETECTORS[name]
    unknown = sorted(set(params) - set(cls.param_names))
    if unknown:
        raise ConfigError(
            f"detector {name!r} has no parameter(s) {unknown}; parameters: {list(cls.param_names)}"
        )
    return cls(**params)


def list_detectors() -> list[dict[str, Any]]:
    """Name, parameters with defaults and a one-line description of each detector."""
    rows = []
    for name, cls in DETECTORS.items():
        sig = inspect.signature(cls.__init__).parameters
        rows.append(
            {
                "name": name,
                "params": {p: sig[p].default for p in cls.param_names},
                "description": (cls.__doc__ or "").strip().splitlines()[0],
            }
        )
    return rows


__all__ = [
    "DETECTORS",
    "GMM",
    "KNN",
    "LOF",
    "SOS",
    "Detector",
    "Mahalanobis",
    "TrainingSetDetector",
    "get_detector",
    "list_detectors",
]
