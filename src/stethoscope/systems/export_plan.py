"""What a system gives `stethoscope export`: its scoring module and how to feed it (`ExportPlan`),
or one line saying why it cannot be exported (`Exportable.export_refusal`).

Every `System` is `Exportable`. A system with a scoring network sets ``no_export = None`` and
implements `scoring_module` (the very module its `score` and `explain` run) and `export_plan`;
`export` then needs no knowledge of any system. A system without one keeps a ``no_export``
reason, said from its own class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from ..features.logmel import LogMelParams

if TYPE_CHECKING:
    from ..engine import RunContext

SAMPLE_RATE = 16_000
DEFAULT_SECONDS = 10.0  # the clip length of a fixed-length export when none is given
EFFICIENTAT_MEL = "efficientat_mel"  # the EfficientAT mn04 encoders' front end (export.frontends)


@dataclass
class ExportPlan:
    """The scoring module and what the exporter needs to trace and describe it.

    ``inputs``: input name -> example batch; ``dynamic``: input name -> {axis: torch.export.Dim};
    ``frontends``: input name -> its audio front end, the DCASE log-mel of these `LogMelParams`
    or `EFFICIENTAT_MEL`; ``outputs``: output names (``score`` first, then ``anomaly_map`` where
    the system has one); ``clip_samples``: the one clip length a fixed-length export scores;
    ``details``: what export.json records of the system's configuration."""

    module: nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic: dict[str, dict[int, Any]]
    frontends: dict[str, LogMelParams | str]
    outputs: list[str]
    clip_samples: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def clip_samples(seconds: float | None) -> int:
    """Samples of a fixed-length export's clip (default `DEFAULT_SECONDS`)."""
    return round((DEFAULT_SECONDS if seconds is None else seconds) * SAMPLE_RATE)


def efficientat_frames(samples: int) -> int:
    """Frames of the EfficientAT mel of a 16 kHz clip of ``samples`` (up-sampled 2x, centred)."""
    from ..encoders.efficientat import EfficientATMel

    return 1 + (2 * samples - 1) // EfficientATMel().hop_length


def batch_dim() -> Any:
    """The dynamic batch axis every export has."""
    return torch.export.Dim("batch")


class Exportable:
    """The export side of the `System` contract."""

    name: ClassVar[str]
    score_norm: str
    score_norm_: dict[str, Any] | None
    # why this kind of system has no ONNX export, in one line; None where `export_plan` gives one
    no_export: ClassVar[str | None] = "it has no scoring module"

    def export_refusal(self) -> str | None:
        """Why this fitted system cannot be exported to ONNX, in one line (None: it can).
        Subclasses add the reasons their hyperparameters give."""
        if self.no_export:
            return f"system {self.name!r} cannot be exported to ONNX: {self.no_export}"
        if self.score_norm_:
            return (
                f"{self.name} with score_norm={self.score_norm!r} cannot be exported to ONNX "
                "yet (the edge runtime does not apply per-section statistics)"
            )
        return None

    def scoring_module(self) -> nn.Module:
        """The fitted scoring network: front-end features in, score (and anomaly map) out."""
        raise ConfigError(f"system {self.name!r} has no scoring module: {self.no_export}")

    def export_plan(
        self, seconds: float | None = None, ctx: RunContext | None = None
    ) -> ExportPlan:
        """The scoring module (frozen for export) and its example inputs, dynamic axes and
        front ends; ``seconds``: the clip length of systems that score one length only; ``ctx``:
        where pretrained encoder weights are found."""
        reason = self.export_refusal()
        raise ConfigError(reason or f"system {self.name!r} cannot be exported to ONNX")

    def refuse_export(self) -> None:
        """ConfigError with `export_refusal`'s reason, if there is one."""
        reason = self.export_refusal()
        if reason:
            raise ConfigError(reason)
