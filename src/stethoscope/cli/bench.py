"""``bench``: the K-fold benchmark of one or several systems (`workflows.bench`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..workflows.bench import bench, bench_systems, comparison_table, system_specs
from ..workflows.data import resolve_channel, scan
from .common import info, run_context
from .flags import DEFAULT_SYSTEM, add_data, add_runtime, add_system


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="K-fold cross-validated benchmark on small labelled sets",
        description="K-fold cross-validated benchmark on small labelled sets. A "
        "joint system (marked in `list`) is fitted once per fold over "
        "the fold's training normals of every set; each set is scored "
        "by its machine type's model.",
    )
    p.add_argument("--data", required=True, help="folder of labelled clips (any supported layout)")
    p.add_argument(
        "--system",
        default=DEFAULT_SYSTEM,
        help=f"system name (default {DEFAULT_SYSTEM}); joint: one fit per fold over "
        "all sets. Several, comma-separated (a,b@variant,c@file.yaml): each "
        "benchmarked on the same folds into OUT/<name>/, compared with paired "
        "bootstrap intervals of every AUC difference in OUT/comparison.json",
    )
    p.add_argument("--folds", type=int, default=5, help="folds over the normal clips (default 5)")
    p.add_argument(
        "--group", default="machine", choices=("machine", "section"), help="what one set is"
    )
    p.add_argument(
        "--score-modes",
        help="e.g. mse,mahala: train each fold once, score in every "
        "mode, write OUT/<mode>/bench.json",
    )
    p.add_argument("--out", required=True, help="output folder for bench.json")
    add_data(p)
    add_system(p)
    add_runtime(p, training=True)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    specs = system_specs(args.system, args.config, args.set or ())
    out, say = Path(args.out), info(args)
    ctx = run_context(args, checkpoints=out / ".checkpoints")
    shortest = max(s.build().feature_request().min_seconds for s in specs)
    clips = scan(args.data, args.layout, args.machine, resolve_channel(args.channel), shortest)
    meta = {"data": str(args.data)}
    if len(specs) > 1:
        if args.score_modes:
            raise ConfigError(
                "--score-modes works with one system; name each mode as its own "
                "system (e.g. dcase_ae,dcase_ae@mahala)"
            )
        comparison = bench_systems(clips, specs, out, ctx, args.folds, args.group, meta, say=say)
        for spec in specs:
            print_bench(spec.label, json.loads((out / spec.folder / "bench.json").read_text()))
        print(comparison_table(comparison))
        say(f"bench: {out / 'comparison.json'}")
        return 0
    modes = args.score_modes.split(",") if args.score_modes else None
    reports = bench(clips, specs[0], out, ctx, args.folds, args.group, modes, meta, say=say)
    for m, rep in reports.items():
        print_bench(f"{args.system}{' (' + m + ')' if m else ''}", rep)
        say(f"bench: {out / m / 'bench.json' if m else out / 'bench.json'}")
    return 0


def print_bench(title: str, report: dict[str, Any]) -> None:
    """One system's table: clips, AUC, pAUC and the per-domain AUCs of every set, then the means."""

    def f(v: float | None) -> str:
        return f"{v:8.3f}" if v is not None else f"{'-':>8}"

    print(title)
    print(f"{'set':<16}{'normal':>8}{'anom':>6}{'AUC':>8}{'pAUC':>8}{'AUC-s':>8}{'AUC-t':>8}")
    for name, st in report["sets"].items():
        print(
            f"{name:<16}{st['n_normal']:>8}{st['n_anomaly']:>6}{f(st['auc'])}{f(st['pauc'])}"
            f"{f(st['auc_source'])}{f(st['auc_target'])}"
        )
    print(f"{'mean':<30}{f(report.get('mean_auc'))}{f(report.get('mean_pauc'))}")
