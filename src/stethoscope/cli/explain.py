"""``explain``: the anomaly map (input, reconstruction, difference) of one file as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import AudioSkipped, ConfigError
from ..systems.base import load_system
from ..workflows.data import audio_clips, resolve_channel
from .common import run_context
from .flags import add_channel, add_runtime


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain", help="anomaly map (input, reconstruction, difference) of one file as PNG"
    )
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("file", help="audio file to explain")
    p.add_argument("--out", required=True, help="PNG path")
    add_channel(p, model=True)
    add_runtime(p)
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from ..reports.maps import save_anomaly_map_png

    system = load_system(args.model)
    if not system.has_anomaly_map:
        raise ConfigError(
            f"system {system.name!r} has no anomaly map; explain needs a reconstruction system"
        )
    ctx = run_context(args, progress=False)
    clips = audio_clips(
        [args.file],
        resolve_channel(args.channel, system),
        "unknown",
        system.feature_request().min_seconds,
        headers=False,
    )
    try:
        if not clips:
            return 0  # left out by --on-bad-audio: the run's last line says so
        clip = clips[0]
        explanation = system.explain(clip, ctx)  # one pass: score, map, reconstruction
    except AudioSkipped:
        return 0
    png = save_anomaly_map_png(explanation, clip, Path(args.out), threshold=system.threshold_)
    decision = "ANOMALY" if system.decide(np.array([explanation.score]))[0] else "normal"
    print(f"{args.file}: score {explanation.score:.6g} ({decision}); map: {png}")
    return 0
