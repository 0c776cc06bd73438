"""``stethoscope calibrate``: refit a trained model's decision threshold on new normal clips, or set
it by hand.

A threshold fitted at training time fits the training clips' conditions; where the
machine, microphone or room differ, normal clips recorded there give a better one. The
new threshold is the gamma fit (at ``percentile``, default the model's
``threshold_percentile``, 0.9) of the model's scores of those clips, or ``threshold``.
The model's ``config.json`` is rewritten atomically (`System.save_config`; the weights do
not change) and its run record keeps every calibration under ``calibrations``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.clip import Clip
from ..data.layouts import audio_files
from ..engine import RunContext
from ..errors import ConfigError, LayoutError
from ..systems.base import System, load_system
from ..systems.threshold import false_alarm_rate, gamma_threshold, score_summary
from .data import resolve_channel, scan


@dataclass
class Calibration:
    """A calibration done: the thresholds before and after, how, and the normal clips' scores (if
    any)."""

    previous: float | None
    threshold: float
    how: str
    scores: np.ndarray | None
    record: dict[str, Any]


def check_calibration(
    data: str | Path | None, threshold: float | None, percentile: float | None
) -> None:
    """A `ConfigError` unless exactly one of fitting on ``data`` and setting ``threshold`` is asked
    for."""
    if threshold is None and not data:
        raise ConfigError(
            "calibrate needs --data NORMALS (to fit the threshold) or --threshold T (to set it)"
        )
    if threshold is not None and percentile is not None:
        raise ConfigError(
            "--percentile fits a threshold on --data, --threshold sets one: give one of them"
        )
    if percentile is not None and not 0 < percentile < 1:
        raise ConfigError(f"--percentile must be in (0, 1), got {percentile}")
    if threshold is not None and not math.isfinite(threshold):
        raise ConfigError(f"--threshold must be a finite number, got {threshold}")


def calibrate(
    model: str | Path,
    ctx: RunContext | None,
    data: str | Path | None = None,
    threshold: float | None = None,
    percentile: float | None = None,
    layout: str = "auto",
    machine: str | None = None,
    channel: str | None = None,
) -> Calibration:
    """Refit (on the normal clips of ``data``) or set (``threshold``) the threshold of the model in
    ``model`` and rewrite its ``config.json`` with the calibration recorded (``ctx``: how the
    clips are scored; None for the defaults)."""
    check_calibration(data, threshold, percentile)
    system = load_system(model)
    old = system.threshold_
    record: dict[str, Any] = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": sys.argv,
        "previous_threshold": old,
    }
    scores = None
    if data:
        clips = normal_clips(Path(data), system, layout, machine, channel)
        scores = system.score(clips, ctx)
        record.update(
            data=str(Path(data).resolve()), n_clips=len(clips), scores=score_summary(scores)
        )
    if threshold is not None:
        system.threshold_ = float(threshold)
        record.update(method="set by hand")
        return save_calibration(system, model, old, scores, record, "set by hand")
    assert scores is not None
    if len(scores) < 2:
        raise ConfigError(
            f"{data}: a threshold fit needs at least 2 normal clips, got {len(scores)} "
            "(or set one with --threshold)"
        )
    how = fit_gamma(system, scores, percentile, record)
    return save_calibration(system, model, old, scores, record, f"{how} normal clips")


def fit_gamma(
    system: System, scores: np.ndarray, percentile: float | None, record: dict[str, Any]
) -> str:
    """Set the system's threshold to the gamma fit of normal ``scores`` (at ``percentile``, else
    the model's), noting it in ``record``; says how, e.g. "gamma fit at percentile 0.9 of 12"."""
    fraction = percentile if percentile is not None else system.threshold_percentile
    system.threshold_ = gamma_threshold(scores, fraction)
    record.update(method="gamma fit", percentile=fraction)
    return f"gamma fit at percentile {fraction:g} of {len(scores)}"


def save_calibration(
    system: System,
    model: str | Path,
    old: float | None,
    scores: np.ndarray | None,
    record: dict[str, Any],
    how: str,
) -> Calibration:
    """Record the calibration (threshold, false alarm rates on ``scores``) in the run record and
    rewrite the model's ``config.json`` atomically."""
    threshold = system.threshold_
    assert threshold is not None  # the callers set it before saving
    record["threshold"] = threshold
    if scores is not None:
        record["false_alarm_rate"] = {
            "previous": None if old is None else false_alarm_rate(scores, old),
            "new": false_alarm_rate(scores, threshold),
        }
    previous = list((system.run_ or {}).get("calibrations", []))
    system.run_ = {**(system.run_ or {}), "calibrations": [*previous, record]}
    system.save_config(model)
    return Calibration(old, threshold, how, scores, record)


def normal_clips(
    root: Path,
    system: System,
    layout: str = "auto",
    machine: str | None = None,
    channel: str | None = None,
) -> list[Clip]:
    """The clips of ``root`` taken as normal, of the model's machine type where the data has
    several; a folder in no known layout is a folder of recordings, all normal (said aloud)."""
    wanted = machine or (system.run_ or {}).get("data_machine")
    try:
        clips = scan(root, layout, machine, resolve_channel(channel, system))
    except LayoutError:
        files = audio_files(root) if layout == "auto" and machine is None and root.is_dir() else []
        if not files:
            raise
        print(
            f"note: {root} matches no data layout; its {len(files)} recordings are all taken as "
            "normal",
            file=sys.stderr,
        )
        return [
            Clip(path=p, machine=wanted or "unknown", channel=resolve_channel(channel, system))
            for p in files
        ]
    machines = sorted({c.machine for c in clips})
    if len(machines) > 1:
        if wanted not in machines:
            raise LayoutError(
                f"{root}: clips of machine types {machines}; choose one with --machine"
            )
        clips = [c for c in clips if c.machine == wanted]
    anomalous = sum(c.label == 1 for c in clips)
    if anomalous:
        print(f"note: {anomalous} clips labelled anomalous are left out", file=sys.stderr)
    normal = [c for c in clips if c.label != 1]
    if not normal:
        raise LayoutError(f"{root}: no normal clips (all {len(clips)} are labelled anomalous)")
    return normal
