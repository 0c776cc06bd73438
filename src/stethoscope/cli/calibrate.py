"""``calibrate``: refit a trained model's decision threshold on new normal clips, or set it by
hand (`workflows.calibrate`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..workflows.calibrate import calibrate, check_calibration
from .common import run_context
from .flags import add_channel, add_runtime


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="refit a model's decision threshold on new normal "
                                         "clips, or set it")
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("--data", help="normal clips: a data root in any supported layout (clips "
                                  "labelled anomalous are left out) or a folder of recordings "
                                  "(every file taken as normal)")
    p.add_argument("--percentile", type=float,
                   help="quantile of the fitted gamma distribution (default: the model's "
                        "threshold_percentile)")
    p.add_argument("--threshold", type=float, help="set this threshold instead of fitting one")
    p.add_argument("--layout", default="auto", help="layout of --data (default auto)")
    p.add_argument("--machine", help="machine type of --data to use (default: the model's)")
    add_channel(p, model=True)
    add_runtime(p)
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    check_calibration(args.data, args.threshold, args.percentile)  # before the run context: flags first
    ctx = run_context(args) if args.data else None  # nothing is scored when the threshold is set by hand
    done = calibrate(args.model, ctx, args.data, args.threshold, args.percentile, args.layout,
                     args.machine, args.channel)
    print(f"threshold: {_fmt(done.previous)} -> {done.threshold:.6g} ({done.how})")
    if done.scores is not None:
        print(f"false alarms on these {len(done.scores)} clips: "
              f"{_alarms(done.scores, done.previous)} with the old "
              f"threshold, {_alarms(done.scores, done.threshold)} with the new")
    print(f"model: {args.model} (calibration recorded in {Path(args.model) / 'config.json'})", file=sys.stderr)
    return 0


def _fmt(threshold: float | None) -> str:
    return "none" if threshold is None else f"{threshold:.6g}"


def _alarms(scores: np.ndarray, threshold: float | None) -> str:
    if threshold is None:
        return "-"
    above = int((np.asarray(scores) > threshold).sum())
    return f"{above}/{len(scores)} ({100 * above / len(scores):.1f}%)"
