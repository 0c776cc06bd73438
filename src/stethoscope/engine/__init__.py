"""The engine: runtime settings (`RunContext`), the one training loop, checkpoints and resume."""

from .checkpoint import discard_checkpoint, fingerprint, prune_checkpoints
from .context import RunContext, available_cores
from .trainer import OptimiserSpec, TrainingInterrupted, TrainResult, train

__all__ = [
    "OptimiserSpec",
    "RunContext",
    "TrainResult",
    "TrainingInterrupted",
    "available_cores",
    "discard_checkpoint",
    "fingerprint",
    "prune_checkpoints",
    "train",
]
