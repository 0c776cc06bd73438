"""``toy``: write a deterministic toy-factory data set in the DCASE 2022+ layout, of any size.

The demo's generator (`data.toy_factory.make_toy_dataset`) exposed: benchmarks and users get
DCASE-sized synthetic data on demand (e.g. 6 machine types x 3,000 clips), written clip by
clip so that memory stays flat, in parallel worker processes, with a progress bar.
``--machines fan,gearbox,valve=pump`` names machine types; ``NAME=SOUND`` gives a type any
name (e.g. the DCASE 2023 names an official baseline expects) with one of the toy sounds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..data.toy_factory import MACHINES, make_toy_dataset
from ..engine.context import available_cores
from ..errors import ConfigError
from .flags import add_quiet


def parse_machines(spec: str) -> tuple[list[str], dict[str, str]]:
    """``"fan,valve=pump"`` -> (["fan", "valve"], {"valve": "pump"}); every sound checked."""
    names: list[str] = []
    sounds: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, sound = (x.strip() for x in item.partition("="))
        sound = sound or name
        if not name or sound not in MACHINES:
            raise ConfigError(
                f"--machines item {item!r}: the sound must be one of "
                f"{', '.join(MACHINES)} "
                f"(give another type name as NAME=SOUND, e.g. valve=pump)"
            )
        if name in sounds:
            raise ConfigError(f"--machines names {name!r} twice")
        names.append(name)
        sounds[name] = sound
    if not names:
        raise ConfigError("--machines is empty: name at least one machine type, e.g. fan,gearbox")
    return names, sounds


def cmd_toy(args: argparse.Namespace) -> int:
    names, sounds = parse_machines(args.machines)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if (
        args.train < 1
        or args.test < 0
        or args.seconds <= 0
        or (args.workers is not None and args.workers < 1)
    ):
        raise ConfigError(
            "need --train >= 1, --test >= 0, --seconds > 0 and --workers >= 1; got "
            f"{args.train}, {args.test}, {args.seconds} and {args.workers}"
        )
    if not sections or any(not (s.isdigit() and len(s) == 2) for s in sections):
        raise ConfigError(
            f"--sections must be two-digit section numbers such as 00,01; got {args.sections!r}"
        )
    out = Path(args.out)
    taken = [out / n for n in names if (out / n).exists() and any((out / n).iterdir())]
    if taken:  # files of an earlier, larger set would stay and be scanned with the new ones
        raise ConfigError(f"{taken[0]} already holds files: remove it or choose another --out")
    start = time.perf_counter()
    make_toy_dataset(
        out,
        names,
        n_train=args.train,
        n_test=args.test,
        seconds=args.seconds,
        seed=args.seed,
        sections=sections,
        sounds=sounds,
        workers=args.workers or available_cores(),
        progress=not args.quiet,
    )
    n = len(names) * len(sections) * (args.train + args.test)
    print(
        f"toy factory: {n} clips of {args.seconds:g} s "
        f"({', '.join(f'{k}={v}' for k, v in sounds.items())}) in "
        f"{out} ({time.perf_counter() - start:.0f} s)",
        file=sys.stderr,
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "toy", help="write a deterministic toy-factory data set (DCASE 2022+ layout), any size"
    )
    p.add_argument("--out", required=True, help="data root to write")
    p.add_argument(
        "--machines",
        default="fan,gearbox",
        help="comma-separated machine types; NAME=SOUND names a type, SOUND one of "
        f"{', '.join(MACHINES)} "
        f"(default fan,gearbox)",
    )
    p.add_argument(
        "--train",
        type=int,
        default=20,
        help="training clips per machine type and section (default 20)",
    )
    p.add_argument(
        "--test", type=int, default=20, help="test clips per machine type and section (default 20)"
    )
    p.add_argument(
        "--seconds", type=float, default=10.0, help="clip length in seconds (default 10)"
    )
    p.add_argument("--sections", default="00", help="comma-separated section numbers (default 00)")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0); same arguments, same bytes"
    )
    p.add_argument(
        "--workers", type=int, help="worker processes (default: the cores this process may use)"
    )
    add_quiet(p)
    p.set_defaults(func=cmd_toy)
