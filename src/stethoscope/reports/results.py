"""Reading an evaluation folder: ``results.json`` and ``scores.csv``.

Both are written by ``stethoscope evaluate`` / ``demo``; here they are read back for the
report, and unreadable input becomes a `StethoscopeError` naming the file (and line) at fault
instead of a traceback from deep inside the rendering.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StethoscopeError


@dataclass(frozen=True)
class ScoreRow:
    """One scored clip of ``scores.csv``; ``label`` / ``decision`` are None where not recorded."""

    file: str
    path: str
    machine: str
    section: str
    domain: str | None
    label: int | None
    score: float
    decision: int | None


def read_results_json(results_dir: Path) -> dict[str, Any]:
    """The parsed ``results.json`` of ``results_dir``; a clear error when it is missing or corrupt."""
    res_file = results_dir / "results.json"
    if not res_file.exists():
        raise StethoscopeError(f"{results_dir}: no results.json (run `stethoscope evaluate` or `demo` first)")
    try:
        return json.loads(res_file.read_text())
    except json.JSONDecodeError as err:
        raise StethoscopeError(f"{res_file}: corrupt JSON ({err})") from err


def read_scores_csv(path: Path) -> list[ScoreRow]:
    """Rows of ``scores.csv`` (``file,path,machine,section,domain,label,score,decision``)."""
    rows = []
    with open(path, newline="") as handle:
        for i, r in enumerate(csv.DictReader(handle), start=2):
            try:
                label, decision = r.get("label") or "", r.get("decision") or ""
                rows.append(ScoreRow(r["file"], r.get("path") or "", r["machine"], r.get("section") or "",
                                     r.get("domain") or None, int(label) if label else None, float(r["score"]),
                                     int(decision) if decision else None))
            except (KeyError, ValueError) as err:
                raise StethoscopeError(f"{path}, line {i}: unreadable row ({err})") from err
    return rows
