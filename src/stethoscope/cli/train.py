"""Verbs that train: ``train`` (one model per machine type), ``bench`` (K-fold protocol), ``demo``."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LayoutError
from ..training import train_machines
from ..data.clip import channel_name
from .engine import check_engine, train_on_ray
from .common import (build_system, by_machine, chosen_channel, finish_evaluation, info, run_context,
                     scan, scored, training_clips)


def cmd_train(args: argparse.Namespace) -> int:
    probe = build_system(args, args.system)  # hyperparameters are checked before any audio is read
    out = Path(args.out)
    check_engine(args)
    ctx = run_context(args, checkpoints=out / ".checkpoints", local_device=args.engine == "local")
    shortest = probe.feature_request().min_seconds
    channel = chosen_channel(args)
    clips = scan(args.data, args.layout, args.machine, channel, shortest)
    val = scan(args.val, args.layout, args.machine, channel, shortest) if args.val else None
    groups = {m: training_clips(c) for m, c in by_machine(clips).items()}
    empty = [m for m, train in groups.items() if not train]
    if empty:
        raise LayoutError(f"{args.data}: no training clips for machine type(s) {empty}")
    nested, meta = not (args.machine or len(groups) == 1), {"data": str(args.data), "channel": channel_name(channel)}
    if args.engine == "ray":
        train_on_ray(args, probe, groups, ctx, val, nested, meta)
        return 0
    train_machines(groups, lambda: build_system(args, args.system), out, ctx, val, nested=nested, meta=meta,
                   say=info(args))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from ..workflows.bench import bench, bench_systems, comparison_table, system_specs

    specs = system_specs(args.system, args.config, args.set or ())
    out, say = Path(args.out), info(args)
    ctx = run_context(args, checkpoints=out / ".checkpoints")
    shortest = max(s.build().feature_request().min_seconds for s in specs)
    clips = scan(args.data, args.layout, args.machine, chosen_channel(args), shortest)
    meta = {"data": str(args.data)}
    if len(specs) > 1:
        if args.score_modes:
            raise ConfigError("--score-modes works with one system; name each mode as its own system "
                              "(e.g. dcase_ae,dcase_ae@mahala)")
        comparison = bench_systems(clips, specs, out, ctx, args.folds, args.group, meta, say=say)
        for spec in specs:
            _print_bench(spec.label, json.loads((out / spec.folder / "bench.json").read_text()))
        print(comparison_table(comparison))
        say(f"bench: {out / 'comparison.json'}")
        return 0
    modes = args.score_modes.split(",") if args.score_modes else None
    reports = bench(clips, specs[0], out, ctx, args.folds, args.group, modes, meta, say=say)
    for m, rep in reports.items():
        _print_bench(f"{args.system}{' (' + m + ')' if m else ''}", rep)
        say(f"bench: {out / m / 'bench.json' if m else out / 'bench.json'}")
    return 0


def _print_bench(title: str, report: dict[str, Any]) -> None:
    f = lambda v: f"{v:8.3f}" if v is not None else f"{'-':>8}"  # noqa: E731
    print(title)
    print(f"{'set':<16}{'normal':>8}{'anom':>6}{'AUC':>8}{'pAUC':>8}{'AUC-s':>8}{'AUC-t':>8}")
    for name, st in report["sets"].items():
        print(f"{name:<16}{st['n_normal']:>8}{st['n_anomaly']:>6}{f(st['auc'])}{f(st['pauc'])}"
              f"{f(st['auc_source'])}{f(st['auc_target'])}")
    print(f"{'mean':<30}{f(report.get('mean_auc'))}{f(report.get('mean_pauc'))}")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..data.toy_factory import make_toy_dataset

    from ..config import packaged_config_path

    # a system's packaged demo size (dcase_ae_demo.yaml: fewer epochs) unless the user gave a config
    variant = "demo" if not args.config and packaged_config_path(f"{args.system}_demo").is_file() else None
    probe = build_system(args, args.system, variant)
    out, say = Path(args.out), info(args)
    ctx = run_context(args, checkpoints=out / ".checkpoints")
    t0 = time.perf_counter()
    data = make_toy_dataset(out / "data", seed=args.seed, n_train=args.n_train, n_test=args.n_test)
    say(f"toy factory data set: {data}")
    groups = by_machine(scan(data))
    train = {m: [c for c in clips if c.split == "train"] for m, clips in groups.items()}
    systems = train_machines(train, lambda: build_system(args, args.system, variant), out / "models", ctx,
                             meta={"data": str(data)}, say=say)
    rows, paths, models, thresholds = [], [], {}, {}
    for machine, clips in groups.items():
        test = [c for c in clips if c.split == "test"]
        models[machine], thresholds[machine] = str((out / "models" / machine).resolve()), systems[machine].threshold_
        kept, scored_rows = scored(systems[machine], test, ctx)
        rows, paths = rows + scored_rows, paths + kept
    finish_evaluation(out, rows, {"system": args.system, "data": str(data), "models": models,
                                  "thresholds": thresholds, "config": probe.get_params(), "seed": args.seed}, paths,
                      say=say)
    from ..reports.html import build_report

    report = build_report(out, out / "report.html")
    print(f"report: {report}")
    say(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {out}")
    return 0
