"""One self-contained HTML report (and its Markdown twin) of an evaluation or a benchmark folder.

An evaluation folder (``results.json`` and ``scores.csv``, as ``stethoscope evaluate`` /
``demo`` write them) gives: a headline (official score and what it averages, pooled AUC/pAUC
with their jackknife CIs), per machine a colour-coded metrics table, ROC curves (pAUC region
shaded), score histograms with the decision threshold, anomaly maps of the most anomalous
clips beside a typical normal one on shared colour scales with a player of each clip, a
sortable, filterable table of every clip, and a reproducibility footer. A benchmark folder
(``bench.json``, or ``<mode>/bench.json`` per scoring mode, from ``stethoscope bench``) gives
per set the fold-averaged AUC/pAUC/AUC-s/AUC-t with their spread over folds and training time
(`bench`). Everything lives in one file (inline CSS, PNGs and small clips as data URIs, no
external fetches) so it can be mailed or archived; the Markdown twin links the same PNGs from
``<stem>_files/<machine>/``.

What cannot be drawn (no labels, no audio paths, no model, a system without maps) is said
in the report instead of failing it.

This module only ties the steps together: `results` reads the folder, `content` (with
`figures` and `map_gallery`) computes what to show, `html_page` and `markdown` render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import StethoscopeError
from ..fsutil import atomic_directory, atomic_write_text
from .bench import bench_chart, bench_files, read_bench, render_bench_html, render_bench_markdown
from .content import machine_part
from .figures import Picture, unique_slugs
from .html_page import render_html
from .markdown import render_markdown
from .results import read_results_json, read_scores_csv


def build_report(results_dir: str | Path, out_path: str | Path) -> Path:
    """Write ``out_path`` (HTML, self-contained) and ``<stem>.md`` + ``<stem>_files/`` beside it.

    ``results_dir`` is an evaluation folder (``results.json``) or a benchmark folder
    (``bench.json`` or ``<mode>/bench.json``); anything else is a `StethoscopeError` naming
    what was expected.
    """
    results_dir, out_path = Path(results_dir), Path(out_path)
    if not results_dir.is_dir():
        raise StethoscopeError(f"{results_dir}: no such folder")
    if (results_dir / "results.json").exists():
        return _evaluation_report(results_dir, out_path)
    if bench_files(results_dir):
        return _bench_report(results_dir, out_path)
    raise StethoscopeError(
        f"{results_dir}: neither an evaluation folder (results.json and "
        "scores.csv, written by `stethoscope evaluate` or `demo`) nor a "
        "benchmark folder (bench.json, or <mode>/bench.json per score mode, "
        "written by `stethoscope bench`)"
    )


def _evaluation_report(results_dir: Path, out_path: Path) -> Path:
    results = read_results_json(results_dir)
    scores_file = results_dir / "scores.csv"
    skipped = results.get("skipped") or []
    items = [f"{k}: {v}" for k, v in skipped.items()] if isinstance(skipped, dict) else skipped
    notes: list[str] = [f"Skipped: {s}" for s in items]
    if scores_file.exists():
        rows = read_scores_csv(scores_file)
    else:
        rows = []
        notes.append(f"{scores_file} is missing: tables only, no figures.")
    machines = sorted(set(results.get("machines") or {}) | {r.machine for r in rows})
    keys = unique_slugs(machines)
    parts = [
        machine_part(m, keys[m], results, [r for r in rows if r.machine == m], results_dir)
        for m in machines
    ]
    files_dir = out_path.with_name(f"{out_path.stem}_files")
    html = render_html(results, parts, notes, results_dir, rows, out_path.parent)
    md = render_markdown(results, parts, notes, files_dir.name, results_dir, out_path.parent)
    return _write(out_path, html, md, [p for part in parts for p in part.charts + part.maps])


def _bench_report(folder: Path, out_path: Path) -> Path:
    modes = read_bench(folder)
    chart = bench_chart(modes)
    files_dir = out_path.with_name(f"{out_path.stem}_files")
    html = render_bench_html(modes, folder, chart, out_path.parent)
    md = render_bench_markdown(modes, folder, chart, files_dir.name)
    return _write(out_path, html, md, [chart] if chart else [])


def _write(out_path: Path, html: str, md: str, pictures: Sequence[Picture]) -> Path:
    """The page, its Markdown twin and the twin's PNGs, each written atomically."""
    with atomic_directory(out_path.with_name(f"{out_path.stem}_files")) as tmp:
        for p in pictures:
            (tmp / p.name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / p.name).write_bytes(p.png)
    atomic_write_text(out_path.with_suffix(".md"), md)
    atomic_write_text(out_path, html)
    return out_path
