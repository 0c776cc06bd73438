"""``score``: audio files and folders scored with a trained model (`workflows.scoring.score_paths`;
``--engine ray``: a fleet's files on Ray Data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..workflows.scoring import score_paths
from .common import run_context
from .engine import add_engine_flags, check_engine, score_on_ray
from .flags import add_channel, add_runtime


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score audio files with a trained model")
    p.add_argument(
        "--model",
        required=True,
        help="model folder written by `train` (--engine "
        "ray: also a folder "
        "of one model per machine type)",
    )
    p.add_argument(
        "paths", nargs="+", help="audio files or folders (--engine ray: also URIs, e.g. s3://...)"
    )
    p.add_argument("--csv", help="also write the scores to this CSV")
    add_channel(p, model=True)
    add_runtime(p)
    add_engine_flags(p, score=True)
    p.set_defaults(func=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    check_engine(args)
    if args.engine == "ray":
        return score_on_ray(args)
    ctx = run_context(args, progress=False)
    scores = score_paths(
        args.model, args.paths, ctx, args.channel, Path(args.csv) if args.csv else None
    )
    width = max([len(str(p)) for p in scores.paths], default=4)
    print(
        f"{'file':<{width}}  {'score':>12}  decision   (threshold {scores.system.threshold_:.6g})"
    )
    for p, r in zip(scores.paths, scores.rows, strict=True):
        print(f"{p!s:<{width}}  {r.score:12.6g}  {'ANOMALY' if r.decision else 'normal'}")
    return 0
