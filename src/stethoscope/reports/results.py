"""Reading an evaluation folder: ``results.json`` and ``scores.csv`` (and any JSON object file).

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


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; a clear error naming the file when it is unreadable, corrupt
    or valid JSON of another kind (``[]``, a number), which ``what`` (its writer) never writes."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise StethoscopeError(f"{path}: unreadable ({err})") from err
    except json.JSONDecodeError as err:
        raise StethoscopeError(f"{path}: corrupt JSON ({err})") from err
    if not isinstance(data, dict):
        raise StethoscopeError(
            f"{path}: expected a JSON object as {what} writes it, got {type(data).__name__}"
        )
    for key, kind in (("machines", dict), ("sets", dict), ("skipped", (list, dict)), ("run", dict)):
        if key in data and data[key] is not None and not isinstance(data[key], kind):
            raise StethoscopeError(
                f"{path}: key {key!r} holds {type(data[key]).__name__}, not what {what} writes"
            )
    return data


def read_results_json(results_dir: Path) -> dict[str, Any]:
    """The parsed ``results.json`` of ``results_dir``; a clear error when it is missing or
    corrupt."""
    res_file = results_dir / "results.json"
    if not res_file.exists():
        raise StethoscopeError(
            f"{results_dir}: no results.json (run `stethoscope evaluate` or `demo` first)"
        )
    results = read_json_object(res_file, "`stethoscope evaluate`")
    for machine, entry in (results.get("machines") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sections") or {}, dict):
            raise StethoscopeError(
                f"{res_file}: machines.{machine} is not an object with a 'sections' object"
            )
    return results


def read_scores_csv(path: Path) -> list[ScoreRow]:
    """Rows of ``scores.csv`` (``file,path,machine,section,domain,label,score,decision``)."""
    rows = []
    with open(path, newline="") as handle:
        for i, r in enumerate(csv.DictReader(handle), start=2):
            try:
                label, decision = r.get("label") or "", r.get("decision") or ""
                rows.append(
                    ScoreRow(
                        r["file"],
                        r.get("path") or "",
                        r["machine"],
                        r.get("section") or "",
                        r.get("domain") or None,
                        int(label) if label else None,
                        float(r["score"]),
                        int(decision) if decision else None,
                    )
                )
            except (KeyError, ValueError) as err:
                raise StethoscopeError(f"{path}, line {i}: unreadable row ({err})") from err
    return rows
