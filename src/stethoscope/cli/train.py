"""``train``: one model per machine type of a data folder (`workflows.train.train_folder`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..workflows.train import train_folder
from .common import info, run_context, spec_from
from .engine import add_engine_flags, check_engine, executor
from .flags import DEFAULT_SYSTEM, add_data, add_runtime, add_system


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a system per machine type on normal clips",
        description="Train a system per machine type on normal clips. A joint "
        "system (marked in `list`) is fitted once over every machine "
        "type in --data and writes one self-contained model per type "
        "all the same.",
    )
    p.add_argument("--data", required=True, help="data root (any supported layout)")
    p.add_argument(
        "--system",
        default=DEFAULT_SYSTEM,
        help=f"system name (default {DEFAULT_SYSTEM}); see `list` (joint: one fit over all types)",
    )
    p.add_argument(
        "--out", required=True, help="model folder (one subfolder per machine type if several)"
    )
    p.add_argument("--val", help="labelled validation data root (for systems that select on it)")
    add_data(p)
    add_system(p)
    add_runtime(p, training=True).add_argument(
        "--data-parallel",
        type=int,
        default=1,
        metavar="N",
        help="train each model on N Ray Train workers together (gloo on CPU; with --device cuda "
        "one GPU each); needs pip install 'stethoscope[ray]' (docs/data_parallel.md)",
    )
    add_engine_flags(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    spec = spec_from(args)  # hyperparameters are checked before any audio is read
    out = Path(args.out)
    check_engine(args)
    ctx = run_context(args, checkpoints=out / ".checkpoints", local_device=args.engine == "local")
    train_folder(
        args.data,
        spec.build,
        out,
        ctx,
        args.layout,
        args.machine,
        args.channel,
        args.val,
        say=info(args),
        executor=executor(args),
    )
    return 0
