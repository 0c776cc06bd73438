"""``calibrate``: refit a trained model's decision threshold on new normal clips, or set it by hand.

A threshold fitted at training time fits the training clips' conditions; where the
machine, microphone or room differ, normal clips recorded there give a better one. The
new threshold is the gamma fit (at ``--percentile``, default the model's
``threshold_percentile``, 0.9) of the model's scores of those clips, or ``--threshold``.
The model's ``config.json`` is rewritten atomically (`System.save_config`; the weights do
not change) and its run record keeps every calibration under ``calibrations``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..data.clip import Clip
from ..data.layouts import audio_files
from ..errors import ConfigError, LayoutError
from ..systems.base import System, load_system
from ..systems.threshold import false_alarm_rate, gamma_threshold, score_summary
from ..workflows.data import resolve_channel, scan
from .common import run_context
from .flags import add_channel, add_runtime


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="refit a model's decision threshold on new normal clips, or set it")
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("--data", help="normal clips: a data root in any supported layout (clips labelled anomalous "
                                  "are left out) or a folder of recordings (every file taken as normal)")
    p.add_argument("--percentile", type=float,
                   help="quantile of the fitted gamma distribution (default: the model's threshold_percentile)")
    p.add_argument("--threshold", type=float, help="set this threshold instead of fitting one")
    p.add_argument("--layout", default="auto", help="layout of --data (default auto)")
    p.add_argument("--machine", help="machine type of --data to use (default: the model's)")
    add_channel(p, model=True)
    add_runtime(p)
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.threshold is None and not args.data:
        raise ConfigError("calibrate needs --data NORMALS (to fit the threshold) or --threshold T (to set it)")
    if args.threshold is not None and args.percentile is not None:
        raise ConfigError("--percentile fits a threshold on --data, --threshold sets one: give one of them")
    if args.percentile is not None and not 0 < args.percentile < 1:
        raise ConfigError(f"--percentile must be in (0, 1), got {args.percentile}")
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise ConfigError(f"--threshold must be a finite number, got {args.threshold}")
    system = load_system(args.model)
    old = system.threshold_
    record: dict = {"time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": sys.argv,
                    "previous_threshold": old}
    scores = None
    if args.data:
        clips = normal_clips(args, system)
        scores = system.score(clips, run_context(args))
        record.update(data=str(Path(args.data).resolve()), n_clips=len(clips), scores=score_summary(scores))
    if args.threshold is not None:
        system.threshold_ = float(args.threshold)
        record.update(method="set by hand")
        how = "set by hand"
    else:
        assert scores is not None
        if len(scores) < 2:
            raise ConfigError(f"{args.data}: a threshold fit needs at least 2 normal clips, got {len(scores)} "
                              "(or set one with --threshold)")
        percentile = args.percentile if args.percentile is not None else system.threshold_percentile
        system.threshold_ = gamma_threshold(scores, percentile)
        record.update(method="gamma fit", percentile=percentile)
        how = f"gamma fit at percentile {percentile:g} of {len(scores)} normal clips"
    record["threshold"] = system.threshold_
    if scores is not None:
        record["false_alarm_rate"] = {"previous": None if old is None else false_alarm_rate(scores, old),
                                      "new": false_alarm_rate(scores, system.threshold_)}
    previous = list((system.run_ or {}).get("calibrations", []))
    system.run_ = {**(system.run_ or {}), "calibrations": [*previous, record]}
    system.save_config(args.model)
    print(f"threshold: {_fmt(old)} -> {system.threshold_:.6g} ({how})")
    if scores is not None:
        print(f"false alarms on these {len(scores)} clips: {_alarms(scores, old)} with the old threshold, "
              f"{_alarms(scores, system.threshold_)} with the new")
    print(f"model: {args.model} (calibration recorded in {Path(args.model) / 'config.json'})", file=sys.stderr)
    return 0


def normal_clips(args: argparse.Namespace, system: System) -> list[Clip]:
    """The clips of ``--data`` taken as normal, of the model's machine type where the data has
    several; a folder in no known layout is a folder of recordings, all normal (said aloud)."""
    root = Path(args.data)
    machine = args.machine or (system.run_ or {}).get("data_machine")
    try:
        clips = scan(root, args.layout, args.machine, resolve_channel(args.channel, system))
    except LayoutError:
        files = audio_files(root) if args.layout == "auto" and args.machine is None and root.is_dir() else []
        if not files:
            raise
        print(f"note: {root} matches no data layout; its {len(files)} recordings are all taken as normal",
              file=sys.stderr)
        return [Clip(path=p, machine=machine or "unknown", channel=resolve_channel(args.channel, system)) for p in files]
    machines = sorted({c.machine for c in clips})
    if len(machines) > 1:
        if machine not in machines:
            raise LayoutError(f"{root}: clips of machine types {machines}; choose one with --machine")
        clips = [c for c in clips if c.machine == machine]
    anomalous = sum(c.label == 1 for c in clips)
    if anomalous:
        print(f"note: {anomalous} clips labelled anomalous are left out", file=sys.stderr)
    normal = [c for c in clips if c.label != 1]
    if not normal:
        raise LayoutError(f"{root}: no normal clips (all {len(clips)} are labelled anomalous)")
    return normal


def _fmt(threshold: float | None) -> str:
    return "none" if threshold is None else f"{threshold:.6g}"


def _alarms(scores: np.ndarray, threshold: float | None) -> str:
    if threshold is None:
        return "-"
    above = int((np.asarray(scores) > threshold).sum())
    return f"{above}/{len(scores)} ({100 * above / len(scores):.1f}%)"
