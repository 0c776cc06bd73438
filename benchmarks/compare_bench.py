"""Compare two grids of ``bench.json`` files exactly, leaving out times.

Used to check that a refactor changed no figure (docs/RESULTS.md section 16): the same
``bench_ablation.py`` command, run on two versions of the code into two folders, must give
the same per-fold AUCs, pAUCs, false alarms and detections, to the last bit. Keys naming a
time (``*seconds*``, ``*time*``, ``*_ms*``) and the ``run`` record (dates, versions, paths)
are left out; ``--skip KEY`` leaves out more top-level keys (``--skip params`` where a
refactor renamed or nested a system's parameters). Exit code 1 when a number or a key
differs, or a file is missing.

    python benchmarks/compare_bench.py runs/after/grid-a runs/before/grid-a
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

TIME_KEYS = ("seconds", "time", "_ms")


def numbers(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number in a bench.json tree with its key path, times and ``run`` left out."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "run" or any(t in key for t in TIME_KEYS):
                continue
            yield from numbers(value, f"{path}/{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from numbers(value, f"{path}[{i}]")
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        yield path, obj


def load(path: Path, skip: Sequence[str]) -> dict[str, float]:
    """The numbers of one bench.json, without the top-level keys in ``skip``."""
    tree = json.loads(path.read_text())
    return dict(numbers({k: v for k, v in tree.items() if k not in skip}))


def compare(a: Path, b: Path, skip: Sequence[str] = ()) -> tuple[int, int, list[str]]:
    """(files compared, numbers compared, differences) between two grid folders."""
    files = count = 0
    problems: list[str] = []
    for file_a in sorted(a.rglob("bench.json")):
        rel = file_a.relative_to(a)
        file_b = b / rel
        if not file_b.exists():
            problems.append(f"{rel}: missing in {b}")
            continue
        na, nb = load(file_a, skip), load(file_b, skip)
        files += 1
        problems += [f"{rel}: key {k} in one file only" for k in sorted(na.keys() ^ nb.keys())]
        for key in sorted(na.keys() & nb.keys()):
            count += 1
            if na[key] != nb[key]:
                problems.append(f"{rel}: {key} {na[key]!r} != {nb[key]!r}")
    return files, count, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="one grid folder (bench_ablation.py --out)")
    parser.add_argument("b", type=Path, help="the other")
    parser.add_argument("--skip", nargs="*", default=[], help="top-level keys to leave out")
    args = parser.parse_args()
    for folder in (args.a, args.b):
        if not folder.is_dir():
            parser.error(f"{folder}: not a folder")
    files, count, problems = compare(args.a, args.b, args.skip)
    for line in problems[:20]:
        print(line)
    print(f"{files} bench.json files, {count} numbers compared, {len(problems)} differences")
    return 1 if problems or not files else 0


if __name__ == "__main__":
    sys.exit(main())
