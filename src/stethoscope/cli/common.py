"""What the CLI verbs share at run time: info lines, the run context from the flags, the
system a verb's flags name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..engine import RunContext
from ..errors import ConfigError
from ..features.cache import default_cache_dir
from ..workflows.spec import SystemSpec, system_spec


def print_info(message: str) -> None:
    """One info line on stderr."""
    print(message, file=sys.stderr)


def info(args: argparse.Namespace) -> Callable[[str], None]:
    """The printer of this command's info lines: `print_info`, or nothing with ``--quiet``."""
    return (lambda message: None) if getattr(args, "quiet", False) else print_info


def run_context(
    args: argparse.Namespace,
    checkpoints: Path | None = None,
    progress: bool | None = None,
    local_device: bool = True,
) -> RunContext:
    """The runtime settings of this command from its flags (never from a system config).
    ``local_device=False``: the device is checked where the work runs (Ray workers), not here."""
    every = getattr(args, "checkpoint_every", 1)
    if every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0 (0 = no checkpoints), got {every}")
    ctx = RunContext(
        device=args.device,
        precision=getattr(args, "precision", "fp32"),
        seed=args.seed,
        threads=args.threads,
        progress=not args.quiet if progress is None else progress,
        cache_dir=None if args.no_cache else Path(args.cache or default_cache_dir()),
        checkpoint_dir=checkpoints if every else None,
        checkpoint_every=max(every, 1),
        resume=getattr(args, "resume", False),
        data_parallel=getattr(args, "data_parallel", 1),
        weights_dirs=weights_dirs(args),
    )
    if ctx.data_parallel > 1:
        from ..engine.launch import require_ray

        require_ray()
    if local_device:
        ctx.check_device()
    ctx.apply_threads()
    return ctx


def weights_dirs(args: argparse.Namespace) -> tuple[Path, ...]:
    """The ``--weights-dir`` folders, each checked to be a folder."""
    dirs = tuple(Path(d).expanduser() for d in getattr(args, "weights_dir", None) or ())
    for folder in dirs:
        if not folder.is_dir():
            raise ConfigError(f"--weights-dir {folder}: not a folder")
    return dirs


def spec_from(args: argparse.Namespace, variant: str | None = None) -> SystemSpec:
    """The system of ``--system`` with its packaged config (or ``variant``), ``--config`` and
    ``--set``, checked before any audio is read."""
    return system_spec(
        args.system, getattr(args, "config", None), getattr(args, "set", None) or (), variant
    )
