"""Command line: ``stethoscope demo | train | score | stream | evaluate | bench | explain | scan |
report | calibrate | toy | list | cache | serve | watch | download | export``.

Exit codes: 0 success, 2 a clear error about the input (file, key or value named), 130
interrupted (Ctrl-C; a training run says where its checkpoint is).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TextIO

from ..engine import TrainingInterrupted
from ..errors import StethoscopeError
from .audio import audio_policy
from .parser import build_parser


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning` of the command line: one ``warning: <message>`` line on stderr,
    without the source path, line number and code line Python's own shows."""
    del category, filename, lineno, line
    text = " ".join(str(message).split("\n"))
    with suppress(OSError):  # stderr gone: nothing to tell
        print(f"warning: {text}", file=file or sys.stderr, flush=True)


@contextmanager
def _warning_lines() -> Iterator[None]:
    """Python warnings as `show_warning` lines while a command runs (the previous hook after)."""
    previous: Any = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        yield
    finally:
        warnings.showwarning = previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; the exit code (see the module's docstring)."""
    with _warning_lines():
        return _run(argv)


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with audio_policy(args):  # --on-bad-audio; the run ends with one line of counts
            return args.func(args)
    except StethoscopeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        where = (
            f"checkpoint after epoch {err.epoch} in {err.checkpoint}; continue with --resume"
            if err.checkpoint
            else "no checkpoint was written yet"
        )
        print(f"interrupted: {where}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`stethoscope list | head`): stop quietly
        os.dup2(
            os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno()
        )  # no error at interpreter exit
        return 141


__all__ = ["build_parser", "main", "show_warning"]
