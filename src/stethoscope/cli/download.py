"""``stethoscope download DATASET --out DIR``: a DCASE Task 2 or MIMII data set from its
official Zenodo records, verified, resumed, several archives at once, unpacked into the
layout `scan` reads (see docs/data.md for every data set, its size, licence and record)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .common import info
from .flags import add_quiet

BASE_ENV = "STETHOSCOPE_DOWNLOAD_BASE"


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "download",
        help="fetch a DCASE Task 2 (2020-2026) or MIMII data set, verified, into OUT",
        description="Fetch a data set from its official Zenodo records: every "
        "archive checked against its published checksum, partial "
        "downloads resumed, several at once, unpacked into the layout "
        "`scan` reads (OUT/<dataset>/<split>/<type>/...), with the "
        "evaluation ground truth where it was published.",
    )
    p.add_argument("dataset", help="dcase2020 ... dcase2026, or mimii (see docs/data.md)")
    p.add_argument("--out", required=True, help="folder to put the data set in (OUT/<dataset>/...)")
    p.add_argument(
        "--machines",
        type=_names,
        metavar="TYPE[,TYPE]",
        help="only these machine types, e.g. fan,valve",
    )
    p.add_argument(
        "--split",
        type=_names,
        metavar="SPLIT[,SPLIT]",
        help="dev, add (additional training) and/or eval (DCASE); 6dB, 0dB, -6dB "
        "(MIMII: write --split=-6dB); default: all",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list what would be fetched, its size and checksum source",
    )
    p.add_argument("--jobs", type=int, default=4, help="archives fetched at once (default 4)")
    p.add_argument(
        "--base-url",
        help="fetch every file from this base URL instead (a mirror; "
        f"default ${BASE_ENV} "
        "or the official hosts)",
    )
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="also fetch archives with no published checksum (kept, marked unverified)",
    )
    p.add_argument(
        "--keep-archives", action="store_true", help="keep the zip files after unpacking"
    )
    p.add_argument(
        "--no-ground-truth",
        action="store_true",
        help="keep the evaluation clips' official anonymous names (no labels applied)",
    )
    p.add_argument(
        "--retries", type=int, default=5, help="attempts per file after the first (default 5)"
    )
    p.add_argument(
        "--registry", metavar="FILE", help="a registry YAML of your own instead of the packaged one"
    )
    add_quiet(p)
    p.set_defaults(func=cmd_download)


def cmd_download(args: argparse.Namespace) -> int:
    from ..data.download import Options, download, dry_run, load_registry, make_plan
    from ..errors import ConfigError

    if args.retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {args.retries}")
    say = info(args)
    opts = Options(
        out=Path(args.out),
        splits=args.split,
        machines=args.machines,
        jobs=args.jobs,
        base_url=args.base_url or os.environ.get(BASE_ENV) or None,
        allow_unverified=args.allow_unverified,
        keep_archives=args.keep_archives,
        ground_truth=not args.no_ground_truth,
        retries=args.retries,
        show_progress=not args.quiet,
        say=lambda m: print(m, file=sys.stderr) if m.startswith("warning") else say(m),
    )
    plan = make_plan(load_registry(args.registry), args.dataset, opts)
    if args.dry_run:
        return dry_run(plan, opts)
    done = download(plan, opts)
    folders = sorted({str(plan.root / a.into) for a in plan.archives})
    unverified = f", {done['unverified']} UNVERIFIED" if done["unverified"] else ""
    print(
        f"{plan.dataset.name}: {done['archives']} archive(s) fetched and unpacked, "
        f"{done['already']} already "
        f"there{unverified}; data in {', '.join(folders)}"
    )
    print(f"next: stethoscope scan {folders[0]}")
    return 0
