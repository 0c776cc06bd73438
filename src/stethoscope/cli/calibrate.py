"""``calibrate``: refit a trained model's decision threshold on new normal clips, or set it by
hand (`workflows.calibrate`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..workflows.calibrate import Calibration, calibrate, check_calibration
from .common import run_context
from .flags import add_channel, add_runtime


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="refit a model's decision threshold on new normal clips "
        "(or on the clips operators marked normal in a monitor's "
        "event store), or set it",
    )
    p.add_argument(
        "--model",
        help="model folder written by `train` (required, except with "
        "--from-store, which then only proposes a threshold)",
    )
    p.add_argument(
        "--from-store",
        metavar="DB",
        help="refit on the clips of --machine that operators marked normal in this event "
        "store (SQLite file or SQLAlchemy URL of serve/watch), with kept audio",
    )
    p.add_argument(
        "--data",
        help="normal clips: a data root in any supported layout (clips labelled anomalous "
        "are left out) or a folder of recordings (every file taken as normal)",
    )
    p.add_argument(
        "--percentile",
        type=float,
        help="quantile of the fitted gamma distribution (default: the model's "
        "threshold_percentile)",
    )
    p.add_argument("--threshold", type=float, help="set this threshold instead of fitting one")
    p.add_argument("--layout", default="auto", help="layout of --data (default auto)")
    p.add_argument(
        "--machine",
        help="machine type of --data to use (default: the model's); with "
        "--from-store, the served machine whose labelled clips are used "
        "(required)",
    )
    add_channel(p, model=True)
    add_runtime(p)
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.from_store:
        return _from_store(args)
    if not args.model:
        raise ConfigError("calibrate needs --model DIR (or --from-store DB --machine M)")
    check_calibration(
        args.data, args.threshold, args.percentile
    )  # before the run context: flags first
    ctx = (
        run_context(args) if args.data else None
    )  # nothing is scored when the threshold is set by hand
    done = calibrate(
        args.model,
        ctx,
        args.data,
        args.threshold,
        args.percentile,
        args.layout,
        args.machine,
        args.channel,
    )
    _report(done, args.model)
    return 0


def _report(done: Calibration, model: str) -> None:
    """The thresholds before and after, the false alarms on the clips, where it is recorded."""
    print(f"threshold: {_fmt(done.previous)} -> {done.threshold:.6g} ({done.how})")
    if done.scores is not None:
        print(
            f"false alarms on these {len(done.scores)} clips: "
            f"{_alarms(done.scores, done.previous)} with the old threshold, "
            f"{_alarms(done.scores, done.threshold)} with the new"
        )
    print(
        f"model: {model} (calibration recorded in {Path(model) / 'config.json'})", file=sys.stderr
    )


def _from_store(args: argparse.Namespace) -> int:
    """``calibrate --from-store DB --machine M [--model DIR]``."""
    if args.data or args.threshold is not None or not args.machine:
        raise ConfigError(
            "--from-store refits on the clips operators marked normal: give --machine M "
            "(and --model DIR to write the threshold), not --data or --threshold"
        )
    from ..workflows.calibrate_store import calibrate_from_store

    ctx = run_context(args) if args.model else None
    done = calibrate_from_store(args.from_store, args.machine, args.model, ctx, args.percentile)
    assert done.scores is not None
    if args.model is None:
        print(
            f"proposed threshold: {done.threshold:.6g} ({done.how}); nothing written: give "
            f"--model DIR to refit and write it"
        )
        return 0
    trained = done.record.get("training_scores")
    if trained:
        print(
            f"training scores (held-out where cross-fitted): n {trained['n']}, median "
            f"{trained['median']:.6g}, p90 {trained['p90']:.6g}; these clips: median "
            f"{float(np.median(done.scores)):.6g}"
        )
    _report(done, args.model)
    return 0


def _fmt(threshold: float | None) -> str:
    return "none" if threshold is None else f"{threshold:.6g}"


def _alarms(scores: np.ndarray, threshold: float | None) -> str:
    if threshold is None:
        return "-"
    above = int((np.asarray(scores) > threshold).sum())
    return f"{above}/{len(scores)} ({100 * above / len(scores):.1f}%)"
