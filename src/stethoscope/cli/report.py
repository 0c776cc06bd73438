"""``report``: a self-contained HTML (and Markdown) report of an evaluation or bench folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from .flags import add_quiet


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="self-contained HTML (and Markdown) report of an evaluation or bench folder"
    )
    p.add_argument(
        "--results", required=True, help="folder written by `evaluate`, `demo` or `bench`"
    )
    p.add_argument("--out", required=True, help="report.html path")
    add_quiet(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ..reports.html import build_report

    path = build_report(Path(args.results), Path(args.out))
    print(f"report: {path}")
    return 0
