"""Verbs that train: ``train`` (one model per machine type), ``bench`` (K-fold protocol), ``demo``."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import prune_checkpoints
from ..errors import LayoutError
from ..training import train_machines
from ..utils import atomic_write_json, run_metadata
from ..data.clip import channel_name
from .engine import check_engine, train_on_ray
from .common import (DEFAULT_SYSTEM, build_system, by_machine, chosen_channel, finish_evaluation, info, run_context,
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
    from ..evaluation.crossval import cross_validate, cross_validate_joint, group_sets

    probe = build_system(args, args.system)
    out, say = Path(args.out), info(args)
    ctx = run_context(args, checkpoints=out / ".checkpoints")
    clips = scan(args.data, args.layout, args.machine, chosen_channel(args), probe.feature_request().min_seconds)
    sets = group_sets(clips, args.group)
    modes = args.score_modes.split(",") if args.score_modes else [None]
    reports: dict[str | None, dict[str, Any]] = {}
    for mode in modes:
        params = {**probe.get_params(), **({"score_mode": mode} if mode else {})}
        reports[mode] = {"system": args.system, "params": params, "folds": args.folds, "seed": args.seed,
                         "data": str(args.data), "sets": {}}
    paths = {m: out / m / "bench.json" if m else out / "bench.json" for m in modes}
    latest: list[Any] = [probe]  # the latest fold's system only (earlier ones are freed), for its encoder tag

    def make() -> Any:
        latest[:] = [build_system(args, args.system)]
        return latest[0]

    def write() -> None:
        for m in modes:
            run = {**run_metadata(reports[m]["params"], args.seed), "runtime": ctx.metadata()}
            atomic_write_json(paths[m], {**reports[m], "run": run})

    def record(name: str, res: dict[str, Any], fitted: Any) -> None:
        per_mode = res if args.score_modes else {None: res}
        encoder = {k: v for k, v in fitted.extra_state().items() if k in ("encoder", "encoder_weights")}
        for m in modes:
            reports[m]["sets"][name] = per_mode[m]
            reports[m].update(encoder)
            r = per_mode[m]
            say(f"[{name}]{' ' + m if m else ''} AUC {r['auc']:.3f}  pAUC {r['pauc']:.3f}  "
                f"(train {r['train_seconds']:.1f} s/fold)")

    joint_sets: dict[str, list[Any]] = {}  # a joint system: every set in one run of folds
    for name, set_clips in sets.items():
        n_normal = sum(c.label == 0 for c in set_clips)
        if n_normal < 2 or not any(c.label == 1 for c in set_clips):
            for m in modes:
                reports[m].setdefault("skipped", {})[name] = "needs at least 2 normal and 1 anomalous clip"
            continue
        if probe.joint:
            joint_sets[name] = set_clips
            continue
        say(f"[{name}] {args.folds}-fold benchmark of {args.system}")
        res = cross_validate(set_clips, make, args.folds, ctx, score_modes=modes if args.score_modes else None,
                             name=name)
        record(name, res, latest[0])
        write()
    if joint_sets:
        say(f"[joint] {args.folds}-fold benchmark of {args.system} over {len(joint_sets)} set(s), "
            "one joint fit per fold")
        results, fitted = cross_validate_joint(joint_sets, make, args.folds, ctx,
                                               score_modes=modes if args.score_modes else None)
        for m in modes:
            reports[m]["joint_fit"] = True
        for name, res in results.items():
            record(name, res, next(iter(fitted.values())))
        write()
    prune_checkpoints(ctx.checkpoint_dir)
    for m in modes:
        rep = reports[m]
        aucs = [s["auc"] for s in rep["sets"].values()]
        rep["mean_auc"] = float(np.mean(aucs)) if aucs else None
        rep["mean_pauc"] = float(np.mean([s["pauc"] for s in rep["sets"].values()])) if aucs else None
    write()
    f = lambda v: f"{v:8.3f}" if v is not None else f"{'-':>8}"  # noqa: E731
    for m in modes:
        print(f"{args.system}{' (' + m + ')' if m else ''}")
        print(f"{'set':<16}{'normal':>8}{'anom':>6}{'AUC':>8}{'pAUC':>8}{'AUC-s':>8}{'AUC-t':>8}")
        for name, st in reports[m]["sets"].items():
            print(f"{name:<16}{st['n_normal']:>8}{st['n_anomaly']:>6}{f(st['auc'])}{f(st['pauc'])}"
                  f"{f(st['auc_source'])}{f(st['auc_target'])}")
        say(f"bench: {paths[m]}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..data.toy_factory import make_toy_dataset

    variant = "demo" if args.system == DEFAULT_SYSTEM and not args.config else None
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
    say(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {out}")
    return 0
