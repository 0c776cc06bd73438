"""The argument parser: one sub-command per verb, runtime flags apart from system parameters."""
from __future__ import annotations

import argparse

from ..engine.context import PRECISIONS
from . import cache, calibrate, download, serve, toy, watch
from . import export as export_verb
from . import scan as scan_verb
from .audio import add_audio_flag
from .common import DEFAULT_SYSTEM, add_channel, add_quiet
from .engine import add_engine_flags
from .train import cmd_bench, cmd_demo, cmd_train
from .use import cmd_evaluate, cmd_explain, cmd_list, cmd_report, cmd_score, cmd_stream


def _runtime(p: argparse.ArgumentParser, training: bool = False) -> argparse._ArgumentGroup:
    """Runtime settings: how a run executes, never saved as hyperparameters."""
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--threads", type=int, help="torch threads (default 1 under OpenMP's PASSIVE wait, stethoscope's default; docs/architecture.md)")
    g.add_argument("--cache", metavar="DIR", help="feature cache folder (default $STETHOSCOPE_CACHE or "
                                                  "~/.cache/stethoscope)")
    g.add_argument("--no-cache", action="store_true", help="read and write no feature cache")
    add_quiet(g)
    add_audio_flag(g)
    if training:
        g.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 (default) or bf16 autocast")
        g.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from OUT/.checkpoints (skips machine types already trained)")
        g.add_argument("--checkpoint-every", type=int, default=1, metavar="N",
                       help="save a training checkpoint every N epochs (default 1; 0 = none)")
    return g


def _data(p: argparse.ArgumentParser, model: bool = False) -> None:
    p.add_argument("--layout", default="auto",
                   help="auto (default), dcase2020, dcase2021, dcase2022, mimii, folder, manifest")
    p.add_argument("--machine", help="only this machine type")
    add_channel(p, model=model)


def _system(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file (or packaged config name) of system hyperparameters")
    p.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                   help="override hyperparameters, e.g. --set epochs=10 batch_size=64 (repeatable)")


def _version() -> str:
    import platform

    import torch

    from .. import __version__

    return f"stethoscope {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    from . import __doc__ as doc

    parser = argparse.ArgumentParser(prog="stethoscope", description=doc)
    parser.add_argument("--version", action="version", version=_version(),
                        help="print the stethoscope, torch and Python versions and exit")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", help="what to do (VERB --help for more)")

    p = sub.add_parser("demo", help="toy-factory data, train, evaluate, print a table (about 2-3 min)")
    p.add_argument("--out", default="stethoscope-demo", help="output folder (default ./stethoscope-demo)")
    p.add_argument("--system", default=DEFAULT_SYSTEM, help=f"system name (default {DEFAULT_SYSTEM}); see `list`")
    p.add_argument("--n-train", type=int, default=40, help="training clips per machine type")
    p.add_argument("--n-test", type=int, default=30, help="test clips per machine type")
    _system(p)
    _runtime(p, training=True)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a system per machine type on normal clips",
                       description="Train a system per machine type on normal clips. A joint system (marked "
                                   "in `list`) is fitted once over every machine type in --data and writes "
                                   "one self-contained model per type all the same.")
    p.add_argument("--data", required=True, help="data root (any supported layout)")
    p.add_argument("--system", default=DEFAULT_SYSTEM,
                   help=f"system name (default {DEFAULT_SYSTEM}); see `list` (joint: one fit over all types)")
    p.add_argument("--out", required=True, help="model folder (one subfolder per machine type if several)")
    p.add_argument("--val", help="labelled validation data root (for systems that select on it)")
    _data(p)
    _system(p)
    _runtime(p, training=True).add_argument(
        "--data-parallel", type=int, default=1, metavar="N",
        help="train each model on N Ray Train workers together (gloo on CPU; with --device cuda one GPU each); "
             "needs pip install 'stethoscope[ray]' (docs/data_parallel.md)")
    add_engine_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="score audio files with a trained model")
    p.add_argument("--model", required=True, help="model folder written by `train` (--engine ray: also a folder "
                                                  "of one model per machine type)")
    p.add_argument("paths", nargs="+", help="audio files or folders (--engine ray: also URIs, e.g. s3://...)")
    p.add_argument("--csv", help="also write the scores to this CSV")
    add_channel(p, model=True)
    _runtime(p)
    add_engine_flags(p, score=True)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("evaluate", help="DCASE metrics and result CSVs, from models or from submission CSVs")
    p.add_argument("--data", help="data root to score with --models")
    p.add_argument("--models", help="folder of trained models (one per machine type) or one model")
    p.add_argument("--scores", help="folder of anomaly_score_*/decision_result_* CSVs to evaluate")
    p.add_argument("--ground-truth", help="folder with ground_truth_data/ and ground_truth_domain/")
    p.add_argument("--out", required=True, help="output folder for results.json and CSVs")
    _data(p, model=True)
    _runtime(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="K-fold cross-validated benchmark on small labelled sets",
                       description="K-fold cross-validated benchmark on small labelled sets. A joint system "
                                   "(marked in `list`) is fitted once per fold over the fold's training "
                                   "normals of every set; each set is scored by its machine type's model.")
    p.add_argument("--data", required=True, help="folder of labelled clips (any supported layout)")
    p.add_argument("--system", default=DEFAULT_SYSTEM,
                   help=f"system name (default {DEFAULT_SYSTEM}); joint: one fit per fold over all sets. Several, "
                        "comma-separated (a,b@variant,c@file.yaml): each benchmarked on the same folds into OUT/<name>/, "
                        "compared with paired bootstrap intervals of every AUC difference in OUT/comparison.json")
    p.add_argument("--folds", type=int, default=5, help="folds over the normal clips (default 5)")
    p.add_argument("--group", default="machine", choices=("machine", "section"), help="what one set is")
    p.add_argument("--score-modes", help="e.g. mse,mahala: train each fold once, score in every mode, "
                                         "write OUT/<mode>/bench.json")
    p.add_argument("--out", required=True, help="output folder for bench.json")
    _data(p)
    _system(p)
    _runtime(p, training=True)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("stream", help="replay a recording as a live stream: a score every --hop seconds")
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("file", help="recording to replay in 1,024-sample chunks")
    p.add_argument("--window", type=float, default=10.0, help="seconds of audio per score (default 10)")
    p.add_argument("--hop", type=float, default=1.0, help="seconds between scores (default 1)")
    add_channel(p, model=True)
    _runtime(p)
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("explain", help="anomaly map (input, reconstruction, difference) of one file as PNG")
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("file", help="audio file to explain")
    p.add_argument("--out", required=True, help="PNG path")
    add_channel(p, model=True)
    _runtime(p)
    p.set_defaults(func=cmd_explain)

    scan_verb.add_parser(sub)

    p = sub.add_parser("report", help="self-contained HTML (and Markdown) report of an evaluation or bench folder")
    p.add_argument("--results", required=True, help="folder written by `evaluate`, `demo` or `bench`")
    p.add_argument("--out", required=True, help="report.html path")
    add_quiet(p)
    p.set_defaults(func=cmd_report)

    toy.add_parser(sub)
    calibrate.add_parser(sub)

    p = sub.add_parser("list", help="systems, encoders and detectors")
    add_quiet(p)
    p.set_defaults(func=cmd_list)

    cache.add_parser(sub)
    serve.add_parser(sub)
    watch.add_parser(sub)
    download.add_parser(sub)
    export_verb.add_parser(sub)
    return parser
