"""The CLI side of the audio policy (`data.policy`): the ``--on-bad-audio`` flag, the policy
in force for one run, where ``skipped.csv`` goes, and the one-line count a run ends with."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..data.clip import Clip
from ..data.policy import ON_BAD_AUDIO, AudioPolicy, audio_paths, print_warning, screen
from ..data.quality import DEFAULT_MAX_SECONDS

SKIPPED_CSV = "skipped.csv"


def add_audio_flag(group: argparse._ActionsContainer) -> None:
    """``--on-bad-audio error|skip|warn`` for a verb that reads audio."""
    group.add_argument("--on-bad-audio", choices=ON_BAD_AUDIO, default=None, metavar="{error,skip,warn}",
                       help="what an unreadable or suspicious audio file does: error (stop, naming it), skip "
                            "(leave it out, list it in skipped.csv) or warn (keep suspicious files, leave out "
                            "unreadable ones, say so); default: error on unreadable, warn on suspicious")
    add_max_seconds(group)


def add_max_seconds(group: argparse._ActionsContainer) -> None:
    """``--max-seconds S``: the longest audio decoded, checked on the header before decoding."""
    group.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS, metavar="S",
                       help=f"refuse audio longer than S seconds, from its header, before decoding it (default "
                            f"{DEFAULT_MAX_SECONDS:g}; bounds the memory one file can take)")


def skipped_csv_path(args: argparse.Namespace) -> Path | None:
    """Where this run lists the files it left out: in ``--out`` (a folder; beside it for
    ``explain``'s PNG; ``score --engine ray``'s too), beside ``score --csv``, else in the current folder; ``scan`` only
    reports and writes nothing."""
    if getattr(args, "verb", None) == "scan":
        return None
    if getattr(args, "verb", None) == "explain":
        return Path(args.out).parent / SKIPPED_CSV
    if getattr(args, "verb", None) == "score" and args.csv:
        return Path(args.csv).parent / SKIPPED_CSV
    out = getattr(args, "out", None)
    return (Path(out) if out else Path.cwd()) / SKIPPED_CSV


@contextmanager
def audio_policy(args: argparse.Namespace, default: str | None = None) -> Iterator[AudioPolicy]:
    """The policy of one run from its flag (``default`` where the verb has its own); at the
    end, even after an error, ``skipped.csv`` (when files were left out) and one line of counts."""
    policy = AudioPolicy(getattr(args, "on_bad_audio", None) or default, say=print_warning,
                         max_seconds=getattr(args, "max_seconds", DEFAULT_MAX_SECONDS))
    try:
        with policy.active():
            yield policy
    finally:
        where = skipped_csv_path(args)
        listed = policy.write_skipped(where) if where else None
        line = policy.summary(listed)
        if line:
            print(line, file=sys.stderr)


def screened(clips: Sequence[Clip], min_seconds: float) -> list[Clip]:
    """The clips that pass the header checks of the active policy (see `data.policy.screen`)."""
    return screen(clips, min_seconds)[0]


def audio_clips(paths: Sequence[str], channel: int | None, machine: str, min_seconds: float) -> list[Clip]:
    """Files and folders named on the command line as clips, after the policy's file and header checks."""
    return screened([Clip(path=p, machine=machine, channel=channel) for p in audio_paths(paths)], min_seconds)
