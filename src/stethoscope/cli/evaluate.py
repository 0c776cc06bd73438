"""``evaluate``: DCASE metrics and result CSVs, from trained models or from submission CSVs
(`workflows.scoring`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import StethoscopeError
from ..evaluation.evaluate import format_table
from ..workflows.scoring import evaluate_folder, evaluate_submission
from .common import info, run_context
from .flags import add_data, add_runtime


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="DCASE metrics and result CSVs, from models or from submission CSVs"
    )
    p.add_argument("--data", help="data root to score with --models")
    p.add_argument("--models", help="folder of trained models (one per machine type) or one model")
    p.add_argument("--scores", help="folder of anomaly_score_*/decision_result_* CSVs to evaluate")
    p.add_argument("--ground-truth", help="folder with ground_truth_data/ and ground_truth_domain/")
    p.add_argument("--out", required=True, help="output folder for results.json and CSVs")
    add_data(p, model=True)
    add_runtime(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.scores:
        if not args.ground_truth:
            raise StethoscopeError("--scores needs --ground-truth DIR")
        result = evaluate_submission(args.scores, args.ground_truth, out)
    elif not (args.data and args.models):
        raise StethoscopeError(
            "evaluate needs --data ROOT --models DIR, or --scores DIR --ground-truth DIR"
        )
    else:
        result = evaluate_folder(
            args.data,
            Path(args.models),
            out,
            run_context(args),
            args.layout,
            args.machine,
            args.channel,
        )
    print(format_table(result))
    info(args)(f"results: {out / 'results.json'}")
    return 0
