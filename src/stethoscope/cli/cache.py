"""``stethoscope cache info|clear``: what the feature cache holds, and emptying it
(docs/cache.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..features.cache import cache_usage, clear_cache, default_cache_dir, max_cache_bytes
from .flags import add_quiet

NAMESPACES = ("logmel", "embeddings")


def human_bytes(n: int) -> str:
    """e.g. ``0 B``, ``12.3 MB``, ``2.0 GB``: decimal units, as the cap is given."""
    size, unit = float(n), "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            break
        size /= 1000
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def cmd_cache(args: argparse.Namespace) -> int:
    root = Path(args.cache or default_cache_dir())
    cap = max_cache_bytes()  # a bad $STETHOSCOPE_CACHE_MAX_GB is an error for both actions
    usage = cache_usage(root)
    if args.action == "clear":
        freed = clear_cache(root)
        print(f"cleared {root}: {usage.files} files, {human_bytes(freed)} freed")
        return 0
    print(f"folder  {root}{'' if root.is_dir() else ' (not created yet)'}")
    print(f"files   {usage.files}")
    print(f"size    {human_bytes(usage.bytes)}")
    for ns in sorted(set(NAMESPACES) | set(usage.by_namespace)):
        print(f"  {ns:<12}{human_bytes(usage.by_namespace.get(ns, 0)):>10}")
    print(
        f"cap     {human_bytes(cap)} ($STETHOSCOPE_CACHE_MAX_GB); least recently used files are "
        "removed beyond it"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="show (info) or empty (clear) the feature cache")
    p.add_argument(
        "action",
        choices=("info", "clear"),
        help="info: folder, files, size per kind and the cap; clear: remove every cached feature",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="cache folder (default $STETHOSCOPE_CACHE or ~/.cache/stethoscope)",
    )
    add_quiet(p)
    p.set_defaults(func=cmd_cache)
