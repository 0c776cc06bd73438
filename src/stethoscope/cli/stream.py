"""``stream``: a recording replayed as a live stream, a score every ``--hop`` seconds
(`realtime`)."""

from __future__ import annotations

import argparse
import sys

from ..errors import AudioSkipped, ConfigError
from ..systems.base import load_system
from ..workflows.data import audio_clips, resolve_channel
from .common import run_context
from .flags import add_channel, add_runtime


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stream", help="replay a recording as a live stream: a score every --hop seconds"
    )
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("file", help="recording to replay in 1,024-sample chunks")
    p.add_argument(
        "--window", type=float, default=10.0, help="seconds of audio per score (default 10)"
    )
    p.add_argument("--hop", type=float, default=1.0, help="seconds between scores (default 1)")
    add_channel(p, model=True)
    add_runtime(p)
    p.set_defaults(func=cmd_stream)


def cmd_stream(args: argparse.Namespace) -> int:
    from ..data.audio import load_audio
    from ..realtime import StreamingScorer, stream_file

    if args.hop <= 0 or args.window <= 0:
        raise ConfigError(
            f"--window and --hop must be positive seconds, got {args.window} and {args.hop}"
        )
    system = load_system(args.model)
    scorer = StreamingScorer(
        system,
        window_seconds=args.window,
        hop_seconds=args.hop,
        ctx=run_context(args, progress=False),
    )
    min_seconds = system.feature_request().min_seconds
    channel = resolve_channel(args.channel, system)
    try:
        if not audio_clips([args.file], channel, "unknown", min_seconds, headers=False):
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
        print(
            f"{args.file}: shorter than one {args.window} s window; nothing scored", file=sys.stderr
        )
    return 0
