"""The CLI side of the audio policy (`data.policy`): the policy in force for one run from its
``--on-bad-audio`` flag (`flags.add_audio_flag`), where ``skipped.csv`` goes, and the one-line
count a run ends with."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..data.policy import AudioPolicy, print_warning
from ..data.quality import DEFAULT_MAX_SECONDS

SKIPPED_CSV = "skipped.csv"


def skipped_csv_path(args: argparse.Namespace) -> Path | None:
    """Where this run lists the files it left out: in ``--out`` (a folder; beside it for
    ``explain``'s PNG; ``score --engine ray``'s too), beside ``score --csv``, else in the current
    folder; ``scan`` only
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
    policy = AudioPolicy(
        getattr(args, "on_bad_audio", None) or default,
        say=print_warning,
        max_seconds=getattr(args, "max_seconds", DEFAULT_MAX_SECONDS),
    )
    try:
        with policy.active():
            yield policy
    finally:
        where = skipped_csv_path(args)
        listed = policy.write_skipped(where) if where else None
        line = policy.summary(listed)
        if line:
            print(line, file=sys.stderr)
