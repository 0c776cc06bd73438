"""Command line: ``stethoscope demo | train | score | stream | evaluate | bench | explain | scan | report | calibrate | toy | list | cache | serve | watch | download | export``.

Exit codes: 0 success, 2 a clear error about the input (file, key or value named), 130
interrupted (Ctrl-C; a training run says where its checkpoint is).
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from ..engine import TrainingInterrupted
from ..errors import StethoscopeError
from .audio import audio_policy
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with audio_policy(args):  # --on-bad-audio; the run ends with one line of counts
            return args.func(args)
    except StethoscopeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:
        where = f"checkpoint after epoch {err.epoch} in {err.checkpoint}; continue with --resume" if err.checkpoint \
            else "no checkpoint was written yet"
        print(f"interrupted: {where}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`stethoscope list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at interpreter exit
        return 141


__all__ = ["build_parser", "main"]
