"""The report's content, independent of HTML or Markdown.

Turns ``results.json`` and the scored clips into what both renderers show: per machine type
a `MachinePart` (metrics table, charts, anomaly maps, notes), the headline numbers and the
reproducibility facts. Computing these once keeps the HTML page and its Markdown twin
saying the same thing, down to how a missing value is printed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.evaluate import describe_official_score, evaluated_sections
from .figures import Picture, histogram_picture, roc_picture
from .map_gallery import map_pictures
from .results import ScoreRow

COLUMNS = (
    ("auc_source", "AUC-s"),
    ("auc_target", "AUC-t"),
    ("auc", "AUC"),
    ("pauc", "pAUC"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
)
MISSING = "–"


@dataclass
class MachinePart:
    """Everything the report shows about one machine type; ``key`` is its unique anchor/folder
    name."""

    name: str
    key: str
    official_score: float | None = None
    official_meaning: str = ""
    columns: list[tuple[str, str]] = field(default_factory=list)
    rows: list[tuple[str, str, dict[str, Any]]] = field(
        default_factory=list
    )  # (label, kind, metrics)
    charts: list[Picture] = field(default_factory=list)
    maps: list[Picture] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: str = ""


def fmt(v: Any, digits: int = 3) -> str:
    """A metric with ``digits`` decimals, or a dash when it is missing."""
    return MISSING if v is None else f"{v:.{digits}f}"


def shown(v: Any) -> str:
    """Any other value as text, or a dash when it is missing (never ``None``)."""
    return MISSING if v is None or v == "" else str(v)


def clip_counts(metrics: dict[str, Any]) -> str:
    """A table row's ``normal / anomalous`` clip counts; empty where the row has none (the
    means)."""
    return f"{metrics['n_normal']} / {metrics['n_anomaly']}" if "n_normal" in metrics else ""


def _label_counts(rows: Sequence[ScoreRow]) -> tuple[int, int]:
    labels = [r.label for r in rows]
    return labels.count(0), labels.count(1)


def _table(
    entry: dict[str, Any], rows: Sequence[ScoreRow]
) -> tuple[list[tuple[str, str]], list[tuple]]:
    """Columns that hold at least one value, and rows: every section (evaluated or not, so that
    the counts add up to the card's), then the means of the evaluated ones."""
    sections = dict(entry.get("sections") or {})
    by_tag: dict[str, list[ScoreRow]] = {}
    for r in rows:
        by_tag.setdefault(r.section, []).append(r)
    table: list[tuple[str, str, dict[str, Any]]] = []
    for tag in sorted(set(sections) | set(by_tag)):
        if tag in sections:
            table.append((tag, "section", sections[tag]))
            continue
        n_norm, n_anom = _label_counts(by_tag[tag])
        if n_norm or n_anom:
            why = "no anomalous clips" if n_norm else "no normal clips"
            counts = {"n_normal": n_norm, "n_anomaly": n_anom, "tag": tag}
            table.append((f"{tag} (no metrics: {why})", "skipped", counts))
    if len(sections) > 1:
        table += [
            ("arithmetic mean", "mean", entry.get("mean") or {}),
            ("harmonic mean", "mean", entry.get("hmean") or {}),
        ]
    cols = [(k, label) for k, label in COLUMNS if any(r[2].get(k) is not None for r in table)]
    return cols, table


def _coverage_note(part: MachinePart, n_norm: int, n_anom: int) -> str | None:
    """Said when the metrics cover fewer labelled clips than the card counts."""
    evaluated = [m for _, kind, m in part.rows if kind == "section"]
    e_norm, e_anom = (
        sum(m.get("n_normal", 0) for m in evaluated),
        sum(m.get("n_anomaly", 0) for m in evaluated),
    )
    if not evaluated or (e_norm, e_anom) == (n_norm, n_anom):
        return None
    skipped = [m["tag"] for _, kind, m in part.rows if kind == "skipped"]
    return (
        f"Metrics cover {len(evaluated)} of {len(evaluated) + len(skipped)} sections: "
        f"{e_norm} normal and "
        f"{e_anom} anomalous of the {n_norm} normal and {n_anom} anomalous clips; "
        f"{', '.join(skipped)} lack{'s' if len(skipped) == 1 else ''} one of the two labels."
    )


def machine_part(
    machine: str, key: str, results: dict[str, Any], rows: Sequence[ScoreRow], results_dir: Path
) -> MachinePart:
    """The table, charts, maps and notes of ``machine``; ``rows`` are its scored clips."""
    part = MachinePart(machine, key)
    entry = (results.get("machines") or {}).get(machine)
    n_norm, n_anom = _label_counts(rows)
    n_unl = len(rows) - n_norm - n_anom
    counts = ((n_norm, "normal"), (n_anom, "anomalous"), (n_unl, "unlabelled"))
    part.counts = ", ".join(f"{n} {w}" for n, w in counts if n) or "no"
    if entry:
        part.official_score = entry.get("official_score")
        part.official_meaning = describe_official_score(list((entry.get("sections") or {}).items()))
    if entry or n_norm or n_anom:
        part.columns, part.rows = _table(entry or {}, rows)
    note = _coverage_note(part, n_norm, n_anom)
    if note:
        part.notes.append(note)
    if not rows:
        part.notes.append("scores.csv has no clips of this machine type: no figures.")
        return part
    threshold = (results.get("thresholds") or {}).get(machine)
    if n_norm and n_anom:
        roc = roc_picture(machine, key, rows)
        if roc:
            part.charts.append(roc)
    elif not entry:
        part.notes.append(
            "No clips with both labels: metrics and ROC curves need normal and "
            "anomalous clips; the histogram shows the scores only."
        )
    part.charts.append(histogram_picture(machine, key, rows, threshold))
    maps, notes = map_pictures(
        machine, key, rows, (results.get("models") or {}).get(machine), results_dir
    )
    part.maps, part.notes = maps, part.notes + notes
    return part


def headline(results: dict[str, Any]) -> dict[str, Any]:
    """The numbers at the top of the report: system, data, official score (and what it averages),
    pooled AUC/pAUC, clip counts."""
    am = results.get("arithmetic_mean") or {}
    ci = results.get("ci95") or {}
    return {
        "system": results.get("system") or "unknown system",
        "data": shown(results.get("data")),
        "official": results.get("official_score"),
        "official_meaning": describe_official_score(evaluated_sections(results)),
        "auc": am.get("auc"),
        "pauc": am.get("pauc"),
        "ci_auc": ci.get("auc"),
        "ci_pauc": ci.get("pauc"),
        "n_clips": shown(results.get("n_clips")),
        "n_labelled": results.get("n_labelled") or 0,
    }


def reproducibility(results: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """The run's facts (recorded ones only), versions and configuration, from ``run`` or older
    top-level keys."""
    run = results.get("run") or {}
    cmd = run.get("command")
    facts = [
        ("seed", run.get("seed", results.get("seed"))),
        ("command", " ".join(map(str, cmd)) if isinstance(cmd, list) else cmd),
        ("python", run.get("python")),
        ("platform", run.get("platform")),
        ("run at (UTC)", run.get("time_utc")),
        ("results folder", str(results_dir)),
    ]
    return {
        "facts": [(k, str(v)) for k, v in facts if v is not None],
        "config": run.get("config") or results.get("config") or {},
        "versions": run.get("versions") or {},
    }
