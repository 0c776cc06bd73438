"""The ensemble's score normalisation (`systems.ensemble`; not a system).

A member's score ``s`` is put on the common scale by the distribution of its held-out training
scores ``h``: ``zscore`` gives ``(s - mean(h)) / std(h)``; ``gamma`` gives ``-log10 P(G > s)``,
G the gamma distribution fitted to ``h`` (see `systems.ensemble` for why held-out scores).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.stats

NORMALISE = ("zscore", "gamma")


def normalisation_stats(heldout: np.ndarray, kind: str) -> dict[str, Any]:
    """What `normalise` needs, from a member's held-out training scores. A gamma fit of
    scores without spread is impossible; those are z-scored with unit spread."""
    h = np.asarray(heldout, dtype=np.float64)
    if kind == "gamma" and len(h) >= 2 and np.ptp(h) > 0:
        shape, loc, scale = scipy.stats.gamma.fit(h)
        return {"kind": "gamma", "shape": float(shape), "loc": float(loc), "scale": float(scale)}
    std = float(h.std())
    return {"kind": "zscore", "mean": float(h.mean()), "std": std if std > 0 else 1.0}


def normalise(scores: np.ndarray, stats: Mapping[str, Any]) -> np.ndarray:
    """A member's scores on the common scale (see the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    if stats["kind"] == "gamma":
        return -scipy.stats.gamma.logsf(
            s, stats["shape"], loc=stats["loc"], scale=stats["scale"]
        ) / math.log(10)
    return (s - stats["mean"]) / stats["std"]
