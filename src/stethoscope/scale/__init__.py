"""Fleet scale on Ray (optional extra ``stethoscope[ray]``): batch scoring on Ray Data
(`score_with_ray`) and one training task per machine type (`train_with_ray`). See
docs/scale_out.md."""

from __future__ import annotations

from typing import Any

__all__ = ["score_with_ray", "train_with_ray"]


def __getattr__(name: str) -> Any:
    """Load lazily: ``import stethoscope.scale`` works without Ray installed."""
    if name == "score_with_ray":
        from .ray_score import score_with_ray

        return score_with_ray
    if name == "train_with_ray":
        from .ray_train import train_with_ray

        return train_with_ray
    raise AttributeError(name)
