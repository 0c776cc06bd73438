"""The files an evaluation writes: ``scores.csv`` (one row per scored clip), the DCASE result
CSVs and ``results.json`` (metrics, what was scored with what, the run record)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_json, atomic_write_text
from ..utils import run_metadata
from .dcase_io import ScoredClip, write_result_csvs
from .evaluate import evaluate

RESULTS_FILE, SCORES_FILE = "results.json", "scores.csv"


def write_scores_table(
    path: Path, rows: Sequence[ScoredClip], paths: Sequence[Path] | None = None
) -> None:
    """``scores.csv``: file, path, machine, section, domain, label, score and decision per row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "path", "machine", "section", "domain", "label", "score", "decision"])
    for i, r in enumerate(rows):
        w.writerow(
            [
                r.file,
                str(paths[i]) if paths else "",
                r.machine,
                r.section_tag,
                r.domain or "",
                "" if r.label is None else r.label,
                repr(r.score),
                r.decision,
            ]
        )
    atomic_write_text(path, buf.getvalue())


def finish_evaluation(
    out: Path,
    rows: Sequence[ScoredClip],
    extra: dict[str, Any],
    paths: Sequence[Path] | None = None,
    result_csvs: bool = True,
) -> dict[str, Any]:
    """Write ``results.json``, ``scores.csv`` (and the DCASE result CSVs unless they were the
    input) into ``out``; returns the results (``extra``, the metrics and the run record)."""
    if result_csvs:
        write_result_csvs(out, rows)
    write_scores_table(out / SCORES_FILE, rows, paths)
    result = {
        **extra,
        **evaluate(rows),
        "run": run_metadata(extra.get("config"), extra.get("seed")),
    }
    atomic_write_json(out / RESULTS_FILE, result)
    return result
