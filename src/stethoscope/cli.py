"""Command line: ``stethoscope demo | train | score | stream | evaluate | bench | explain | report | list``."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import load_config
from .data.clip import Clip
from .errors import CheckpointError, LayoutError, StethoscopeError
from .evaluation.dcase_io import ScoredClip, read_submission, write_result_csvs
from .evaluation.evaluate import evaluate, format_table
from .systems.base import System, get_system, list_systems, load_system
from .utils import atomic_write_json, atomic_write_text, run_metadata, seed_everything

DEFAULT_SYSTEM = "dcase_ae"


# -- shared helpers -------------------------------------------------------------------
def _scan(root: str | Path, layout: str = "auto", machine: str | None = None, channel: int = 0) -> list[Clip]:
    from .data.layouts import scan

    return scan(root, layout=layout, machine=machine, channel=channel)


def _build_system(args: argparse.Namespace, name: str, variant: str | None = None) -> System:
    """Packaged config (or its ``variant``), the user's file and overrides; --seed and
    --device apply to every system that takes them."""
    cfg = load_config(name, getattr(args, "config", None), getattr(args, "set", None) or (), variant)
    cls = list_systems().get(name)
    if cls is None:
        return get_system(name)  # raises the unknown-system error with the list of names
    flags = {"seed": args.seed, "device": args.device}
    return get_system(name, **{**cfg, **{k: v for k, v in flags.items() if k in cls.param_names()}})


def _training_clips(clips: Sequence[Clip]) -> list[Clip]:
    """The layout's training split; where a folder has none (e.g. only labelled test clips),
    the clips labelled normal, said aloud."""
    train = [c for c in clips if c.split == "train" and c.label in (0, None)]
    if train:
        return train
    normals = [c for c in clips if c.label == 0]
    if normals:
        print(f"note: no training split found; training on the {len(normals)} clips labelled normal", file=sys.stderr)
    return normals


def _by_machine(clips: Sequence[Clip]) -> dict[str, list[Clip]]:
    out: dict[str, list[Clip]] = {}
    for c in clips:
        out.setdefault(c.machine, []).append(c)
    return dict(sorted(out.items()))


def _score_clips(system: System, clips: Sequence[Clip]) -> list[ScoredClip]:
    scores = system.score(clips)
    decisions = system.decide(scores)
    return [ScoredClip(file=c.name, machine=c.machine, section=c.section, label=c.label, domain=c.domain,
                       score=float(s), decision=int(d), layout=c.layout)
            for c, s, d in zip(clips, scores, decisions)]


def _write_scores_table(path: Path, rows: Sequence[ScoredClip], paths: Sequence[Path] | None = None) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "path", "machine", "section", "domain", "label", "score", "decision"])
    for i, r in enumerate(rows):
        w.writerow([r.file, str(paths[i]) if paths else "", r.machine, r.section_tag, r.domain or "",
                    "" if r.label is None else r.label, repr(r.score), r.decision])
    atomic_write_text(path, buf.getvalue())


def _load_quiet(model_dir: str | Path, device: str) -> System:
    """A saved system for a few clips: no progress bars (they would drown the one-line answers)."""
    cfg_path = Path(model_dir) / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    quiet = {"progress": False} if "progress" in cfg.get("params", {}) else {}
    return load_system(model_dir, device=device, **quiet)


def _model_dir_for(models: Path, machine: str) -> Path:
    if (models / "config.json").exists():
        return models
    if (models / machine / "config.json").exists():
        return models / machine
    raise CheckpointError(f"{models}: no model for machine type {machine!r} (expected {models / machine}/config.json)")


# -- verbs ----------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    clips = _scan(args.data, args.layout, args.machine, args.channel)
    val = _scan(args.val, args.layout, args.machine, args.channel) if args.val else None
    groups = _by_machine(clips)
    out = Path(args.out)
    for machine, mclips in groups.items():
        train = _training_clips(mclips)
        if not train:
            raise LayoutError(f"{args.data}: no training clips for machine type {machine!r}")
        seed_everything(args.seed)
        system = _build_system(args, args.system)
        mval = [c for c in val if c.machine == machine] if val else None
        print(f"[{machine}] training {args.system} on {len(train)} clips", file=sys.stderr)
        t0 = time.perf_counter()
        system.fit(train, mval)
        elapsed = time.perf_counter() - t0
        target = out if args.machine or len(groups) == 1 else out / machine
        meta = run_metadata(system.get_params(), args.seed)
        meta.update({"data": str(args.data), "machine": machine, "n_train": len(train), "train_seconds": elapsed})
        system.save(target, meta)
        print(f"[{machine}] saved to {target} ({elapsed:.1f} s, threshold {system.threshold_:.4g})", file=sys.stderr)
    return 0


def _audio_paths(paths: Sequence[str]) -> list[Path]:
    from .data.audio import AUDIO_SUFFIXES

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
    system = _load_quiet(args.model, args.device)
    paths = _audio_paths(args.paths)
    machine = json.loads((Path(args.model) / "config.json").read_text()).get("run", {}).get("machine", "unknown")
    clips = [Clip(path=p, machine=machine, channel=args.channel) for p in paths]
    rows = _score_clips(system, clips)
    width = max(len(str(p)) for p in paths)
    print(f"{'file':<{width}}  {'score':>12}  decision   (threshold {system.threshold_:.6g})")
    for p, r in zip(paths, rows):
        print(f"{str(p):<{width}}  {r.score:12.6g}  {'ANOMALY' if r.decision else 'normal'}")
    if args.csv:
        _write_scores_table(Path(args.csv), rows, paths)
    return 0


def _finish_evaluation(out: Path, rows: Sequence[ScoredClip], extra: dict[str, Any], paths=None,
                       result_csvs: bool = True) -> dict[str, Any]:
    """results.json, scores.csv (and the DCASE result CSVs unless they were the input), printed table."""
    if result_csvs:
        write_result_csvs(out, rows)
    _write_scores_table(out / "scores.csv", rows, paths)
    result = {**extra, **evaluate(rows), "run": run_metadata(extra.get("config"), extra.get("seed"))}
    atomic_write_json(out / "results.json", result)
    print(format_table(result))
    print(f"results: {out / 'results.json'}", file=sys.stderr)
    return result


def cmd_evaluate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.scores:
        if not args.ground_truth:
            raise StethoscopeError("--scores needs --ground-truth DIR")
        rows = read_submission(args.scores, args.ground_truth)
        _finish_evaluation(out, rows, {"scores": args.scores, "ground_truth": args.ground_truth}, result_csvs=False)
        return 0
    if not (args.data and args.models):
        raise StethoscopeError("evaluate needs --data ROOT --models DIR, or --scores DIR --ground-truth DIR")
    clips = _scan(args.data, args.layout, args.machine, args.channel)
    rows, paths, models, thresholds, names = [], [], {}, {}, set()
    for machine, mclips in _by_machine(clips).items():
        test = [c for c in mclips if c.split == "test"] or mclips
        model_dir = _model_dir_for(Path(args.models), machine)
        system = load_system(model_dir, device=args.device)
        models[machine], thresholds[machine] = str(model_dir.resolve()), system.threshold_
        names.add(system.name)
        rows += _score_clips(system, test)
        paths += [c.path for c in test]
    _finish_evaluation(out, rows, {"system": ",".join(sorted(names)), "data": str(args.data), "models": models,
                                   "thresholds": thresholds}, paths)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .evaluation.crossval import cross_validate, group_sets

    clips = _scan(args.data, args.layout, args.machine, args.channel)
    sets = group_sets(clips, args.group)
    modes = args.score_modes.split(",") if args.score_modes else [None]
    probe = _build_system(args, args.system)
    reports: dict[str | None, dict[str, Any]] = {}
    for mode in modes:
        params = {**probe.get_params(), **({"score_mode": mode} if mode else {})}
        reports[mode] = {"system": args.system, "params": params, "folds": args.folds, "seed": args.seed,
                         "data": str(args.data), "sets": {}}
    out = Path(args.out)
    paths = {m: out / m / "bench.json" if m else out / "bench.json" for m in modes}
    built: list[System] = []  # the latest fold's system only (earlier ones are freed), for its encoder tag

    def make(fold: int) -> System:
        seed_everything(args.seed + fold)
        built[:] = [_build_system(args, args.system)]
        return built[0]

    def write() -> None:
        for m in modes:
            atomic_write_json(paths[m], {**reports[m], "run": run_metadata(reports[m]["params"], args.seed)})

    for name, set_clips in sets.items():
        n_normal = sum(c.label == 0 for c in set_clips)
        if n_normal < 2 or not any(c.label == 1 for c in set_clips):
            for m in modes:
                reports[m].setdefault("skipped", {})[name] = "needs at least 2 normal and 1 anomalous clip"
            continue
        print(f"[{name}] {args.folds}-fold benchmark of {args.system}", file=sys.stderr)
        res = cross_validate(set_clips, make, args.folds, args.seed, progress=not args.quiet,
                             score_modes=modes if args.score_modes else None)
        per_mode = res if args.score_modes else {None: res}
        encoder = {k: v for k, v in built[-1].extra_state().items() if k in ("encoder", "encoder_weights")}
        for m in modes:
            reports[m]["sets"][name] = per_mode[m]
            reports[m].update(encoder)
            r = per_mode[m]
            print(f"[{name}]{' ' + m if m else ''} AUC {r['auc']:.3f}  pAUC {r['pauc']:.3f}  "
                  f"(train {r['train_seconds']:.1f} s/fold)", file=sys.stderr)
        write()
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
        print(f"bench: {paths[m]}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .data.toy_factory import make_toy_dataset

    out = Path(args.out)
    t0 = time.perf_counter()
    data = make_toy_dataset(out / "data", seed=args.seed, n_train=args.n_train, n_test=args.n_test)
    print(f"toy factory data set: {data}", file=sys.stderr)
    clips = _scan(data)
    variant = "demo" if args.system == DEFAULT_SYSTEM and not args.config else None
    rows, paths, models, thresholds = [], [], {}, {}
    for machine, mclips in _by_machine(clips).items():
        seed_everything(args.seed)
        system = _build_system(args, args.system, variant)
        train = [c for c in mclips if c.split == "train"]
        print(f"[{machine}] training {args.system} on {len(train)} clips", file=sys.stderr)
        system.fit(train)
        system.save(out / "models" / machine, run_metadata(system.get_params(), args.seed))
        models[machine], thresholds[machine] = str((out / "models" / machine).resolve()), system.threshold_
        test = [c for c in mclips if c.split == "test"]
        rows += _score_clips(system, test)
        paths += [c.path for c in test]
    _finish_evaluation(out, rows, {"system": args.system, "data": str(data), "models": models,
                                   "thresholds": thresholds, "config": system.get_params(), "seed": args.seed}, paths)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {out}", file=sys.stderr)
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from .data.audio import load_audio
    from .realtime import StreamingScorer, stream_file

    system = _load_quiet(args.model, args.device)
    scorer = StreamingScorer(system, window_seconds=args.window, hop_seconds=args.hop)
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
    from .reports.maps import save_anomaly_map_png

    system = _load_quiet(args.model, args.device)
    clip = Clip(path=Path(args.file), machine="unknown", channel=args.channel)
    score = float(system.score([clip])[0])
    png = save_anomaly_map_png(system, clip, Path(args.out), score=score)
    print(f"{args.file}: score {score:.6g} ({'ANOMALY' if score > (system.threshold_ or np.inf) else 'normal'}); map: {png}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .reports.html import build_report

    path = build_report(Path(args.results), Path(args.out))
    print(f"report: {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .detectors import list_detectors
    from .encoders import list_encoders

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


# -- parser ---------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, data: bool = False, system: bool = False) -> None:
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if data:
        p.add_argument("--layout", default="auto",
                       help="auto (default), dcase2020, dcase2021, dcase2022, mimii, folder, manifest")
        p.add_argument("--machine", help="only this machine type")
        p.add_argument("--channel", type=int, default=0, help="channel of multichannel files (default 0)")
    if system:
        p.add_argument("--config", help="YAML file of system parameters")
        p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override system parameters, e.g. epochs=10")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stethoscope", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("demo", help="toy-factory data, train, evaluate, print a table (about 1-2 min)")
    p.add_argument("--out", default="stethoscope-demo", help="output folder (default ./stethoscope-demo)")
    p.add_argument("--system", default=DEFAULT_SYSTEM)
    p.add_argument("--n-train", type=int, default=40, help="training clips per machine type")
    p.add_argument("--n-test", type=int, default=30, help="test clips per machine type")
    _common(p, system=True)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a system per machine type on normal clips")
    p.add_argument("--data", required=True, help="data root (any supported layout)")
    p.add_argument("--system", default=DEFAULT_SYSTEM, help=f"system name (default {DEFAULT_SYSTEM}); see `list`")
    p.add_argument("--out", required=True, help="model folder (one subfolder per machine type if several)")
    p.add_argument("--val", help="labelled validation data root (for systems that select on it)")
    _common(p, data=True, system=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="score audio files with a trained model")
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("paths", nargs="+", help="audio files or folders")
    p.add_argument("--csv", help="also write the scores to this CSV")
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("evaluate", help="DCASE metrics and result CSVs, from models or from submission CSVs")
    p.add_argument("--data", help="data root to score with --models")
    p.add_argument("--models", help="folder of trained models (one per machine type) or one model")
    p.add_argument("--scores", help="folder of anomaly_score_*/decision_result_* CSVs to evaluate")
    p.add_argument("--ground-truth", help="folder with ground_truth_data/ and ground_truth_domain/")
    p.add_argument("--out", required=True, help="output folder for results.json and CSVs")
    _common(p, data=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="K-fold cross-validated benchmark on small labelled sets")
    p.add_argument("--data", required=True)
    p.add_argument("--system", default=DEFAULT_SYSTEM)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--group", default="machine", choices=("machine", "section"), help="what one set is")
    p.add_argument("--score-modes", help="e.g. mse,mahala: train each fold once, score in every mode, "
                                         "write OUT/<mode>/bench.json")
    p.add_argument("--out", required=True, help="output folder for bench.json")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p, data=True, system=True)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("stream", help="replay a recording as a live stream: a score every --hop seconds")
    p.add_argument("--model", required=True)
    p.add_argument("file", help="recording to replay in 1,024-sample chunks")
    p.add_argument("--window", type=float, default=10.0, help="seconds of audio per score (default 10)")
    p.add_argument("--hop", type=float, default=1.0, help="seconds between scores (default 1)")
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("explain", help="anomaly map (input, reconstruction, difference) of one file as PNG")
    p.add_argument("--model", required=True)
    p.add_argument("file")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--channel", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("report", help="self-contained HTML (and Markdown) report of an evaluation folder")
    p.add_argument("--results", required=True, help="folder written by `evaluate` or `demo`")
    p.add_argument("--out", required=True, help="report.html path")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("list", help="systems, encoders and detectors")
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StethoscopeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
