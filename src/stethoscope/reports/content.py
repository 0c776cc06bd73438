"""The report's content, independent of HTML or Markdown.

Turns ``results.json`` and the scored clips into what both renderers show: per machine type
a `MachinePart` (metrics table, charts, anomaly maps, notes), the headline numbers and the
reproducibility facts. Computing these once keeps the HTML page and its Markdown twin
saying the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .figures import Picture, histogram_picture, roc_picture
from .map_gallery import map_pictures
from .results import ScoreRow

COLUMNS = (("auc_source", "AUC-s"), ("auc_target", "AUC-t"), ("auc", "AUC"), ("pauc", "pAUC"),
           ("precision", "precision"), ("recall", "recall"), ("f1", "F1"))


@dataclass
class MachinePart:
    """Everything the report shows about one machine type."""

    name: str
    official_score: float | None = None
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (label, kind, metrics)
    charts: list[Picture] = field(default_factory=list)
    maps: list[Picture] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: str = ""


def fmt(v: Any, digits: int = 3) -> str:
    """A metric with ``digits`` decimals, or a dash when it is missing."""
    return "–" if v is None else f"{v:.{digits}f}"


def clip_counts(metrics: dict[str, Any]) -> str:
    """A table row's ``normal / anomalous`` clip counts; empty where the row has none (the means)."""
    return f"{metrics['n_normal']} / {metrics['n_anomaly']}" if "n_normal" in metrics else ""


def _table(entry: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str, dict[str, Any]]]]:
    """Columns that hold at least one value, and rows: sections, then the means."""
    rows = [(tag, "section", sec) for tag, sec in entry.get("sections", {}).items()]
    if len(rows) > 1:
        rows += [("arithmetic mean", "mean", entry.get("mean", {})), ("harmonic mean", "mean", entry.get("hmean", {}))]
    cols = [(k, label) for k, label in COLUMNS if any(r[2].get(k) is not None for r in rows)]
    return cols, rows


def machine_part(machine: str, results: dict[str, Any], rows: Sequence[ScoreRow], results_dir: Path) -> MachinePart:
    """The table, charts, maps and notes of ``machine``; ``rows`` are its scored clips."""
    part = MachinePart(machine)
    entry = results.get("machines", {}).get(machine)
    if entry:
        part.official_score = entry.get("official_score")
        part.columns, part.rows = _table(entry)
    labels = [r.label for r in rows]
    n_norm, n_anom, n_unl = labels.count(0), labels.count(1), labels.count(None)
    counts = ((n_norm, "normal"), (n_anom, "anomalous"), (n_unl, "unlabelled"))
    part.counts = ", ".join(f"{n} {w}" for n, w in counts if n)
    if not rows:
        part.notes.append("scores.csv has no clips of this machine type: no figures.")
        return part
    threshold = results.get("thresholds", {}).get(machine)
    if n_norm and n_anom:
        roc = roc_picture(machine, rows)
        if roc:
            part.charts.append(roc)
    elif not entry:
        part.notes.append("No clips with both labels: metrics and ROC curves need normal and anomalous clips; "
                          "the histogram shows the scores only.")
    part.charts.append(histogram_picture(machine, rows, threshold))
    maps, notes = map_pictures(machine, rows, results.get("models", {}).get(machine), results_dir)
    part.maps, part.notes = maps, part.notes + notes
    return part


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers at the top of the report: system, data, official score, pooled AUC/pAUC, clip counts."""
    am = results.get("arithmetic_mean") or {}
    ci = results.get("ci95") or {}
    return {"system": results.get("system") or "unknown system", "data": results.get("data") or "",
            "official": results.get("official_score"), "auc": am.get("auc"), "pauc": am.get("pauc"),
            "ci_auc": ci.get("auc"), "ci_pauc": ci.get("pauc"),
            "n_clips": results.get("n_clips"), "n_labelled": results.get("n_labelled")}


def reproducibility(results: dict[str, Any]) -> dict[str, Any]:
    """The run's seed, configuration, versions, command and platform, from ``run`` or older top-level keys."""
    run = results.get("run") or {}
    cmd = run.get("command")
    return {"seed": run.get("seed", results.get("seed")), "config": run.get("config") or results.get("config") or {},
            "versions": run.get("versions") or {}, "command": " ".join(cmd) if isinstance(cmd, list) else cmd,
            "python": run.get("python"), "platform": run.get("platform"), "time": run.get("time_utc")}
