"""Verbs that use trained models: ``score``, ``evaluate``, ``stream``, ``explain``, ``report``, ``list``."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..errors import AudioSkipped, ConfigError, StethoscopeError
from ..evaluation.dcase_io import read_submission
from ..systems.base import list_systems, load_system
from .common import (by_machine, chosen_channel, finish_evaluation, info, model_dir_for, run_context, scan, scored,
                     write_scores_table)


def cmd_score(args: argparse.Namespace) -> int:
    from .audio import audio_clips
    from .engine import check_engine, score_on_ray

    check_engine(args)
    if args.engine == "ray":
        return score_on_ray(args)

    system = load_system(args.model)
    ctx = run_context(args, progress=False)
    machine = (system.run_ or {}).get("data_machine", "unknown")
    clips = audio_clips(args.paths, chosen_channel(args, system), machine, system.feature_request().min_seconds)
    paths, rows = scored(system, clips, ctx)
    width = max([len(str(p)) for p in paths], default=4)
    print(f"{'file':<{width}}  {'score':>12}  decision   (threshold {system.threshold_:.6g})")
    for p, r in zip(paths, rows):
        print(f"{str(p):<{width}}  {r.score:12.6g}  {'ANOMALY' if r.decision else 'normal'}")
    if args.csv:
        write_scores_table(Path(args.csv), rows, paths)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.scores:
        if not args.ground_truth:
            raise StethoscopeError("--scores needs --ground-truth DIR")
        rows = read_submission(args.scores, args.ground_truth)
        finish_evaluation(out, rows, {"scores": args.scores, "ground_truth": args.ground_truth}, result_csvs=False,
                          say=info(args))
        return 0
    if not (args.data and args.models):
        raise StethoscopeError("evaluate needs --data ROOT --models DIR, or --scores DIR --ground-truth DIR")
    ctx = run_context(args)
    clips = scan(args.data, args.layout, args.machine, chosen_channel(args))
    rows, paths, models, thresholds, names = [], [], {}, {}, set()
    for machine, mclips in by_machine(clips).items():
        test = [c for c in mclips if c.split == "test"] or mclips
        model_dir = model_dir_for(Path(args.models), machine)
        system = load_system(model_dir)
        channel = chosen_channel(args, system)  # each machine type's model reads its own channel
        test = [dataclasses.replace(c, channel=channel) for c in test]
        models[machine], thresholds[machine] = str(model_dir.resolve()), system.threshold_
        names.add(system.name)
        kept, scored_rows = scored(system, test, ctx)
        rows, paths = rows + scored_rows, paths + kept
    finish_evaluation(out, rows, {"system": ",".join(sorted(names)), "data": str(args.data), "models": models,
                                  "thresholds": thresholds}, paths, say=info(args))
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from ..data.audio import load_audio
    from ..realtime import StreamingScorer, stream_file
    from .audio import audio_clips

    if args.hop <= 0 or args.window <= 0:
        raise ConfigError(f"--window and --hop must be positive seconds, got {args.window} and {args.hop}")
    system = load_system(args.model)
    scorer = StreamingScorer(system, window_seconds=args.window, hop_seconds=args.hop,
                             ctx=run_context(args, progress=False))
    min_seconds = system.feature_request().min_seconds
    channel = chosen_channel(args, system)
    try:
        if not audio_clips([args.file], channel, "unknown", min_seconds):
            return 0  # left out by --on-bad-audio: the run's last line says so
        wave = load_audio(args.file, channel=channel, min_seconds=min_seconds)
    except AudioSkipped:
        return 0
    print(f"{'t (s)':>8}  {'score':>12}  decision   (threshold {system.threshold_:.6g})")
    n = 0
    for result in stream_file(scorer, wave):
        n += 1
        flag = "ANOMALY" if result.decision else "normal"
        print(f"{result.end_seconds:8.2f}  {result.score:12.6g}  {flag}", flush=True)
    if n == 0:
        print(f"{args.file}: shorter than one {args.window} s window; nothing scored", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from ..reports.maps import save_anomaly_map_png
    from .audio import audio_clips

    system = load_system(args.model)
    if not system.has_anomaly_map:
        raise ConfigError(f"system {system.name!r} has no anomaly map; explain needs a reconstruction system")
    ctx = run_context(args, progress=False)
    clips = audio_clips([args.file], chosen_channel(args, system), "unknown", system.feature_request().min_seconds)
    try:
        if not clips:
            return 0  # left out by --on-bad-audio: the run's last line says so
        clip = clips[0]
        explanation = system.explain(clip, ctx)  # one pass: score, map, reconstruction
    except AudioSkipped:
        return 0
    png = save_anomaly_map_png(explanation, clip, Path(args.out), threshold=system.threshold_)
    decision = "ANOMALY" if system.decide([explanation.score])[0] else "normal"
    print(f"{args.file}: score {explanation.score:.6g} ({decision}); map: {png}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..reports.html import build_report

    path = build_report(Path(args.results), Path(args.out))
    print(f"report: {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from ..detectors import list_detectors
    from ..encoders import list_encoders

    del args
    print("systems:")
    for name, cls in list_systems().items():
        joint = " [joint: one fit over all machine types]" if cls.joint is True else ""
        print(f"  {name:<24} {cls.description}{joint}")
    print("encoders:")
    for enc in list_encoders():
        if enc["name"] == "random":
            state = "random weights (a no-pretraining control)"
        else:
            state = f"weights {'present' if enc.get('weights_present') else 'missing'} ({enc.get('weights_file')})"
        print(f"  {enc['name']:<24} dim {enc['dim']:<4} {state}")
    print("detectors:")
    for det in list_detectors():
        params = ", ".join(f"{k}={v}" for k, v in det["params"].items())
        print(f"  {det['name']:<24} {det['description']} [{params}]")
    return 0
