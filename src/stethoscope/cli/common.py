"""What the CLI verbs share: the run context from flags, systems from configs, scanning,
scoring into rows, and the evaluation outputs."""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config import load_config
from ..data.clip import Clip, channel_name, parse_channel
from ..engine import RunContext
from ..errors import CheckpointError, ConfigError
from ..evaluation.dcase_io import ScoredClip, write_result_csvs
from ..evaluation.evaluate import evaluate, format_table
from ..features.cache import default_cache_dir
from ..features.extract import FeatureRequest
from ..systems.base import System, get_system
from ..utils import atomic_write_json, atomic_write_text, run_metadata

# what `train`, `bench` and `demo` use without --system: the measured robust choice on few real
# clips (docs/mel_stats.md, docs/RESULTS.md section 13), fitted in seconds
DEFAULT_SYSTEM = "mel_stats"


def add_quiet(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--quiet``, which every verb takes."""
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or lines and no info lines on stderr (warnings and errors still show)")


def channel_arg(text: str) -> str:
    """argparse type of ``--channel``: ``0``, ``1``, ... or ``mean``, checked, kept as text."""
    from ..errors import ConfigError

    try:
        return str(channel_name(parse_channel(text)))
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_channel(p: argparse.ArgumentParser | argparse._ArgumentGroup, model: bool = False) -> None:
    """``--channel 0|1|...|mean``; for verbs that use a model, its default is the model's own."""
    default = "the channel the model was trained on (0 for older models)" if model else "0"
    p.add_argument("--channel", type=channel_arg, default=None, metavar="N|mean",
                   help=f"channel of multichannel files: a number or mean (default: {default}); DCASE 2026: "
                        "0 near, 1 far microphone; MIMII: 0-7")


def chosen_channel(args: argparse.Namespace, system: System | None = None) -> int | None:
    """The channel a command reads: ``--channel`` when given, else the model's recorded one
    (``run.channel`` in its config.json), else 0. A flag that differs from the model's is said."""
    recorded = (system.run_ or {}).get("channel", 0) if system is not None else 0
    given = getattr(args, "channel", None)
    if given is None:
        return parse_channel(recorded)
    channel = parse_channel(given)
    if system is not None and channel_name(channel) != recorded:
        print(f"warning: the model was trained on channel {recorded}; reading channel {given} as asked",
              file=sys.stderr)
    return channel


def print_info(message: str) -> None:
    print(message, file=sys.stderr)


def info(args: argparse.Namespace) -> Callable[[str], None]:
    """The printer of this command's info lines: `print_info`, or nothing with ``--quiet``."""
    return (lambda message: None) if getattr(args, "quiet", False) else print_info


def run_context(args: argparse.Namespace, checkpoints: Path | None = None, progress: bool | None = None,
                local_device: bool = True) -> RunContext:
    """The runtime settings of this command from its flags (never from a system config).
    ``local_device=False``: the device is checked where the work runs (Ray workers), not here."""
    every = getattr(args, "checkpoint_every", 1)
    if every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0 (0 = no checkpoints), got {every}")
    ctx = RunContext(device=args.device, precision=getattr(args, "precision", "fp32"), seed=args.seed,
                     threads=args.threads, progress=not args.quiet if progress is None else progress,
                     cache_dir=None if args.no_cache else Path(args.cache or default_cache_dir()),
                     checkpoint_dir=checkpoints if every else None, checkpoint_every=max(every, 1),
                     resume=getattr(args, "resume", False), data_parallel=getattr(args, "data_parallel", 1))
    if ctx.data_parallel > 1:
        from ..engine.launch import require_ray

        require_ray()
    if local_device:
        ctx.torch_device  # a clear error now if CUDA was asked for but is absent
    ctx.apply_threads()
    return ctx


def build_system(args: argparse.Namespace, name: str, variant: str | None = None) -> System:
    """Packaged config (or its ``variant``), the user's file, then ``--set`` overrides."""
    cfg = load_config(name, getattr(args, "config", None), getattr(args, "set", None) or (), variant)
    return get_system(name, **cfg)


def scan(root: str | Path, layout: str = "auto", machine: str | None = None, channel: int | None = 0,
         min_seconds: float = FeatureRequest().min_seconds) -> list[Clip]:
    """The clips of a data folder that pass the audio policy's file and header checks."""
    from ..data.layouts import scan as scan_layout
    from .audio import screened

    return screened(scan_layout(root, layout=layout, machine=machine, channel=channel), min_seconds)


def training_clips(clips: Sequence[Clip]) -> list[Clip]:
    """The layout's training split; where a folder has none (e.g. only labelled test clips),
    the clips labelled normal, said aloud."""
    train = [c for c in clips if c.split == "train" and c.label in (0, None)]
    if train:
        return train
    normals = [c for c in clips if c.label == 0]
    if normals:
        print(f"note: no training split found; training on the {len(normals)} clips labelled normal", file=sys.stderr)
    return normals


def by_machine(clips: Sequence[Clip]) -> dict[str, list[Clip]]:
    out: dict[str, list[Clip]] = {}
    for c in clips:
        out.setdefault(c.machine, []).append(c)
    return dict(sorted(out.items()))


def scored(system: System, clips: Sequence[Clip], ctx: RunContext) -> tuple[list[Path], list[ScoredClip]]:
    """(paths, rows) of the clips scored: those the audio checks left out have no row, nor
    those whose score is not finite (e.g. samples far beyond full scale): each of these is
    left out with a warning line and listed in skipped.csv."""
    from ..data.policy import current_policy

    scores = system.score(clips, ctx)
    policy = current_policy()
    for clip, score in zip(clips, scores):
        if not np.isfinite(score) and not policy.is_skipped(clip.path):  # NaN alone: left out by the checks
            policy.leave_out(clip.path, f"the model's score is {score} (not finite): the audio cannot be scored "
                                        f"(samples far beyond full scale?)")
    kept = [i for i, s in enumerate(scores) if np.isfinite(s)]
    decisions = system.decide(scores[kept])
    return [Path(clips[i].path) for i in kept], [
        ScoredClip(file=clips[i].name, machine=clips[i].machine, section=clips[i].section, label=clips[i].label,
                   domain=clips[i].domain, score=float(scores[i]), decision=int(d), layout=clips[i].layout)
        for i, d in zip(kept, decisions)]


def write_scores_table(path: Path, rows: Sequence[ScoredClip], paths: Sequence[Path] | None = None) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "path", "machine", "section", "domain", "label", "score", "decision"])
    for i, r in enumerate(rows):
        w.writerow([r.file, str(paths[i]) if paths else "", r.machine, r.section_tag, r.domain or "",
                    "" if r.label is None else r.label, repr(r.score), r.decision])
    atomic_write_text(path, buf.getvalue())


def model_dir_for(models: Path, machine: str) -> Path:
    if (models / "config.json").exists():
        return models
    if (models / machine / "config.json").exists():
        return models / machine
    raise CheckpointError(f"{models}: no model for machine type {machine!r} (expected {models / machine}/config.json)")


def finish_evaluation(out: Path, rows: Sequence[ScoredClip], extra: dict[str, Any], paths=None,
                      result_csvs: bool = True, say: Callable[[str], None] = print_info) -> dict[str, Any]:
    """results.json, scores.csv (and the DCASE result CSVs unless they were the input), printed table."""
    if result_csvs:
        write_result_csvs(out, rows)
    write_scores_table(out / "scores.csv", rows, paths)
    result = {**extra, **evaluate(rows), "run": run_metadata(extra.get("config"), extra.get("seed"))}
    atomic_write_json(out / "results.json", result)
    print(format_table(result))
    say(f"results: {out / 'results.json'}")
    return result
