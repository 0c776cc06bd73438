"""One self-contained HTML report (and its Markdown twin) of an evaluation folder.

Reads ``results.json`` and ``scores.csv`` as ``stethoscope evaluate`` / ``demo`` write them
and shows: a headline (official score, pooled AUC/pAUC with their jackknife CIs), per
machine a colour-coded metrics table, ROC curves (pAUC region shaded), score histograms
with the decision threshold, and anomaly maps of the most anomalous clips beside a typical
normal one on the same colour scale; a reproducibility footer closes it. Everything lives in
one file (inline CSS, PNGs as data URIs, no external fetches) so it can be mailed or
archived; the Markdown twin links the same PNGs from ``<stem>_files/``.

What cannot be drawn (no labels, no audio paths, no model, a system without maps) is said
in the report instead of failing it.

This module only ties the steps together: `results` reads the folder, `content` (with
`figures` and `map_gallery`) computes what to show, `html_page` and `markdown` render it.
"""
from __future__ import annotations

from pathlib import Path

from ..utils import atomic_directory, atomic_write_text
from .content import machine_part
from .html_page import render_html
from .markdown import render_markdown
from .results import read_results_json, read_scores_csv


def build_report(results_dir: str | Path, out_path: str | Path) -> Path:
    """Write ``out_path`` (HTML, self-contained) and ``<stem>.md`` + ``<stem>_files/`` beside it."""
    results_dir, out_path = Path(results_dir), Path(out_path)
    results = read_results_json(results_dir)
    scores_file = results_dir / "scores.csv"
    notes: list[str] = [f"Skipped: {s}" for s in results.get("skipped", [])]
    if scores_file.exists():
        rows = read_scores_csv(scores_file)
    else:
        rows = []
        notes.append(f"{scores_file} is missing: tables only, no figures.")
    machines = sorted(set(results.get("machines", {})) | {r.machine for r in rows})
    parts = [machine_part(m, results, [r for r in rows if r.machine == m], results_dir) for m in machines]
    files_dir = out_path.with_name(f"{out_path.stem}_files")
    html = render_html(results, parts, notes, results_dir)
    md = render_markdown(results, parts, notes, files_dir.name, results_dir)
    with atomic_directory(files_dir) as tmp:
        for part in parts:
            for p in part.charts + part.maps:
                (tmp / p.name).write_bytes(p.png)
    atomic_write_text(out_path.with_suffix(".md"), md)
    atomic_write_text(out_path, html)
    return out_path
