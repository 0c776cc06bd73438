"""Verbs that use trained models: ``score``, ``evaluate``, ``stream``, ``explain``, ``report``, ``list``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..data.clip import Clip
from ..errors import ConfigError, LayoutError, StethoscopeError
from ..evaluation.dcase_io import read_submission
from ..systems.base import list_systems, load_system
from .common import (by_machine, finish_evaluation, info, model_dir_for, run_context, scan, score_rows,
                     write_scores_table)


def _audio_paths(paths: Sequence[str]) -> list[Path]:
    from ..data.audio import AUDIO_SUFFIXES

    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise LayoutError(f"{p}: folder holds no .wav or .flac files")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise LayoutError(f"{p}: no such file or folder")
    return out


def cmd_score(args: argparse.Namespace) -> int:
    system = load_system(args.model)
    ctx = run_context(args, progress=False)
    paths = _audio_paths(args.paths)
    machine = (system.run_ or {}).get("data_machine", "unknown")
    clips = [Clip(path=p, machine=machine, channel=args.channel) for p in paths]
    rows = score_rows(system, clips, ctx)
    width = max(len(str(p)) for p in paths)
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
    clips = scan(args.data, args.layout, args.machine, args.channel)
    rows, paths, models, thresholds, names = [], [], {}, {}, set()
    for machine, mclips in by_machine(clips).items():
        test = [c for c in mclips if c.split == "test"] or mclips
        model_dir = model_dir_for(Path(args.models), machine)
        system = load_system(model_dir)
        models[machine], thresholds[machine] = str(model_dir.resolve()), system.threshold_
        names.add(system.name)
        rows += score_rows(system, test, ctx)
        paths += [c.path for c in test]
    finish_evaluation(out, rows, {"system": ",".join(sorted(names)), "data": str(args.data), "models": models,
                                  "thresholds": thresholds}, paths, say=info(args))
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from ..data.audio import load_audio
    from ..realtime import StreamingScorer, stream_file

    if args.hop <= 0 or args.window <= 0:
        raise ConfigError(f"--window and --hop must be positive seconds, got {args.window} and {args.hop}")
    system = load_system(args.model)
    scorer = StreamingScorer(system, window_seconds=args.window, hop_seconds=args.hop,
                             ctx=run_context(args, progress=False))
    wave = load_audio(args.file, channel=args.channel)
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

    system = load_system(args.model)
    if not system.has_anomaly_map:
        raise ConfigError(f"system {system.name!r} has no anomaly map; explain needs a reconstruction system")
    clip = Clip(path=Path(args.file), machine="unknown", channel=args.channel)
    explanation = system.explain(clip, run_context(args, progress=False))  # one pass: score, map, reconstruction
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
        print(f"  {name:<24} {cls.description}")
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
