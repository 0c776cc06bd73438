"""``demo``: toy-factory data, a model per machine type, their evaluation and report
(`workflows.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.evaluate import format_table
from ..workflows.demo import run_demo
from ..workflows.spec import demo_variant
from .common import info, run_context, spec_from
from .flags import DEFAULT_SYSTEM, add_runtime, add_system


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="toy-factory data, train, evaluate, print a table, write "
        "report.html (seconds "
        "with the default mel_stats)",
    )
    p.add_argument(
        "--out", default="stethoscope-demo", help="output folder (default ./stethoscope-demo)"
    )
    p.add_argument(
        "--system",
        default=DEFAULT_SYSTEM,
        help=f"system name (default {DEFAULT_SYSTEM}); see `list`",
    )
    p.add_argument("--n-train", type=int, default=40, help="training clips per machine type")
    p.add_argument("--n-test", type=int, default=30, help="test clips per machine type")
    add_system(p)
    add_runtime(p, training=True)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    spec = spec_from(args, demo_variant(args.system, args.config))
    out, say = Path(args.out), info(args)
    ctx = run_context(args, checkpoints=out / ".checkpoints")
    demo = run_demo(spec, out, ctx, args.n_train, args.n_test, say=say)
    print(format_table(demo.results))
    say(f"results: {out / 'results.json'}")
    print(f"report: {demo.report}")
    say(f"demo finished in {demo.seconds:.0f} s; outputs in {out}")
    return 0
