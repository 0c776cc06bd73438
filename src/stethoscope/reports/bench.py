"""The report of a ``stethoscope bench`` folder: K-fold cross-validated results per set.

A bench folder holds ``bench.json``, or with ``--score-modes`` one ``<mode>/bench.json`` per
scoring mode. Per mode and set the report shows the clip counts, AUC, pAUC, AUC-s and AUC-t as
the mean over folds ± their standard deviation over folds (computed from the per-fold values
``bench`` records), the seconds one fold's training took and the scoring time per clip; a
chart puts every set's fold AUCs side by side across modes. Same look, same self-contained
HTML page and Markdown twin as the evaluation report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from ..errors import StethoscopeError
from .comparison import comparison_html, comparison_markdown, read_comparison
from .content import fmt, reproducibility, shown
from .figures import PLOT_STYLE, SECTION_COLOURS, Picture
from .html_base import (
    facts_html,
    figure_html,
    kpis_html,
    legend_html,
    metric_cell,
    notes_html,
    page,
)
from .maps import figure_png_bytes, new_figure
from .numbers import readable
from .results import read_json_object

BENCH_FILE = "bench.json"
METRICS = (("auc", "AUC"), ("pauc", "pAUC"), ("auc_source", "AUC-s"), ("auc_target", "AUC-t"))


@dataclass
class BenchSet:
    """One set's cross-validated result: means and standard deviations over folds per metric."""

    name: str
    n_normal: Any
    n_anomaly: Any
    means: dict[str, float | None]
    spreads: dict[str, float | None]
    fold_aucs: list[float]
    train_seconds: float | None
    score_ms: float | None


@dataclass
class BenchMode:
    """One ``bench.json``: a scoring mode's results (``label`` empty for a plain ``bench`` run)."""

    label: str
    path: Path
    data: dict[str, Any]
    sets: list[BenchSet]

    @property
    def title(self) -> str:
        return self.label or str((self.data.get("params") or {}).get("score_mode") or "results")

    def mean(self, key: str) -> float | None:
        """``mean_auc`` / ``mean_pauc`` as recorded, else the mean over the sets so far."""
        recorded = self.data.get(f"mean_{key}")
        values = [v for s in self.sets if (v := s.means[key]) is not None]
        return recorded if recorded is not None else (float(np.mean(values)) if values else None)


def bench_files(folder: Path) -> dict[str, Path]:
    """``{mode: bench.json}`` of a bench folder: ``{"": folder/bench.json}`` or one per
    ``<mode>/``."""
    if (folder / BENCH_FILE).is_file():
        return {"": folder / BENCH_FILE}
    return {p.parent.name: p for p in sorted(folder.glob(f"*/{BENCH_FILE}"))}


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _bench_set(name: str, entry: dict[str, Any]) -> BenchSet:
    folds = [f for f in entry.get("folds") or [] if isinstance(f, dict)]
    means, spreads = {}, {}
    for key, _ in METRICS:
        values = [v for v in (_number(f.get(key)) for f in folds) if v is not None]
        recorded = _number(entry.get(key))
        means[key] = (
            recorded if recorded is not None else (float(np.mean(values)) if values else None)
        )
        spreads[key] = (
            float(np.std(values)) if len(values) > 1 else _number(entry.get(f"{key}_std"))
        )
    return BenchSet(
        name,
        entry.get("n_normal"),
        entry.get("n_anomaly"),
        means,
        spreads,
        [v for v in (_number(f.get("auc")) for f in folds) if v is not None],
        _number(entry.get("train_seconds")),
        _number(entry.get("score_ms_per_clip")),
    )


def read_bench(folder: Path) -> list[BenchMode]:
    """Every ``bench.json`` of ``folder``; a clear error naming the file when one is malformed."""
    modes = []
    for label, path in bench_files(folder).items():
        data = read_json_object(path, "`stethoscope bench`")
        sets = []
        for name, entry in (data.get("sets") or {}).items():
            if not isinstance(entry, dict):
                raise StethoscopeError(
                    f"{path}: sets.{name} is {type(entry).__name__}, not an object"
                )
            sets.append(_bench_set(name, entry))
        modes.append(BenchMode(label, path, data, sets))
    return modes


def bench_chart(modes: Sequence[BenchMode]) -> Picture | None:
    """Mean AUC per set and mode (bars), each fold's AUC (dots), chance at 0.5."""
    names = list(dict.fromkeys(s.name for m in modes for s in m.sets))
    if not names:
        return None
    width = 0.8 / len(modes)
    with matplotlib.rc_context(PLOT_STYLE):
        fig = new_figure((max(5.2, 1.1 * len(names) * max(1, len(modes) / 2) + 2), 4.2))
        ax = fig.subplots()
        for i, mode in enumerate(modes):
            colour = SECTION_COLOURS[i % len(SECTION_COLOURS)]
            label: str | None = mode.title
            for s in mode.sets:
                if s.means["auc"] is None:
                    continue
                x = names.index(s.name) - 0.4 + width * (i + 0.5)
                ax.bar(
                    x,
                    s.means["auc"],
                    width * 0.9,
                    color=colour,
                    alpha=0.35,
                    edgecolor=colour,
                    label=label,
                )
                ax.scatter(np.full(len(s.fold_aucs), x), s.fold_aucs, s=14, color=colour, zorder=3)
                label = None  # one legend entry per mode
        ax.axhline(0.5, color="#9ca3af", lw=1, ls=":", label="chance")
        tilt = len(names) > 4
        ax.set_xticks(
            range(len(names)), names, rotation=30 if tilt else 0, ha="right" if tilt else "center"
        )
        ax.set(
            ylim=(0, 1.02),
            ylabel="AUC",
            title="AUC per set: mean over folds (bar), each fold (dot)",
        )
        fig.legend(fontsize=8.5, loc="outside lower center", ncols=min(len(modes) + 1, 4))
        png = figure_png_bytes(fig, dpi=120)
    return Picture(
        "bench/auc.png",
        "AUC per set and fold",
        "Bars: AUC averaged over folds; "
        "dots: each fold's AUC "
        "(its test normals against all the set's anomalies).",
        png,
    )


def _columns(mode: BenchMode) -> list[tuple[str, str]]:
    return [(k, label) for k, label in METRICS if any(s.means[k] is not None for s in mode.sets)]


def _seconds(v: float | None) -> str:
    return "–" if v is None else readable(v, 3)


def _notes(mode: BenchMode) -> list[str]:
    skipped = mode.data.get("skipped") or {}
    items = skipped.items() if isinstance(skipped, dict) else ((s, "") for s in skipped)
    return [f"{name}: skipped ({why})" if why else f"{name}: skipped" for name, why in items]


def _headline(modes: Sequence[BenchMode]) -> dict[str, Any]:
    first = modes[0].data
    several = len({m.data.get("label") or m.data.get("system") for m in modes}) > 1 and first.get(
        "label"
    )
    system = ", ".join(str(m.data.get("label")) for m in modes) if several else first.get("system")
    return {
        "system": system or "unknown system",
        "data": shown(first.get("data")),
        "folds": shown(first.get("folds")),
        "sets": len({s.name for m in modes for s in m.sets}),
    }


def _mode_card(m: BenchMode) -> str:
    """One score mode's card: its results folder and a table row per set, then its notes."""
    cols = _columns(m)
    head = "".join(f"<th>{label}</th>" for _, label in cols)
    rows = "".join(
        f"<tr><td>{escape(s.name)}</td><td>{shown(s.n_normal)}</td><td>{shown(s.n_anomaly)}</td>"
        + "".join(metric_cell(s.means[k], s.spreads[k]) for k, _ in cols)
        + f"<td>{_seconds(s.train_seconds)}</td><td>{_seconds(s.score_ms)}</td></tr>"
        for s in m.sets
    )
    return (
        f'<section class="card" id="mode-{escape(m.label or "results")}"><div '
        'class="card-head">'
        f"<h2>{escape(m.title)}</h2></div><p "
        f'class="counts"><code>{escape(str(m.path))}</code></p>'
        "<div "
        f'class="table-wrap"><table><thead><tr><th>set</th><th>normal</th><th>anom.</th>{head}'
        "<th>train s / fold</th><th>score ms / "
        f"clip</th></tr></thead><tbody>{rows}</tbody></table></div>"
        f"{notes_html(_notes(m))}</section>"
    )


def render_bench_html(
    modes: Sequence[BenchMode], folder: Path, chart: Picture | None, page_dir: Path
) -> str:
    """The page of a bench folder."""
    h = _headline(modes)
    comparison = read_comparison(folder)
    kpis = [
        (
            "main" if i == 0 else "",
            f"mean AUC{' · ' + m.title if m.label else ''}",
            fmt(m.mean("auc")),
            f"pAUC {fmt(m.mean('pauc'))} · mean over {len(m.sets)} "
            f"set{'s' if len(m.sets) != 1 else ''}",
        )
        for i, m in enumerate(modes)
    ]
    kpis.append(("", "folds", h["folds"], f"{h['sets']} sets · ± = standard deviation over folds"))
    cards = [_mode_card(m) for m in modes]
    r = reproducibility(modes[0].data, folder)
    config = modes[0].data.get("params") or r["config"]
    config_json = escape(json.dumps(config, indent=2, default=str))
    charts = (
        f'<section class="card"><div class="grid">{figure_html(chart, page_dir)}</div></section>'
        if chart
        else ""
    )
    body = f"""<div class="eyebrow">Stethoscope · cross-validated benchmark</div>
<h1>{escape(h["system"])}</h1>
<p class="sub">data <code>{escape(h["data"])}</code> · per set, the normal clips are split into
folds; each fold trains on the other normals and tests on its normals plus all anomalies. Metrics
are means over folds ± their standard deviation over folds.</p>
<div class="kpis">{kpis_html(kpis)}</div>
{legend_html()}
{charts}
{comparison_html(comparison) if comparison else ""}
{"".join(cards)}
<footer><section class="card"><h2>Reproducibility</h2>
<p class="counts">Regenerate this page with
<code>stethoscope report --results {escape(str(folder))} --out report.html</code></p>
<h3>Run</h3>{facts_html(r["facts"])}
<details><summary>Configuration</summary><pre>{config_json}</pre></details>
</section><p>Made by Stethoscope. Self-contained: no external resources.</p></footer>"""
    return page(f"Stethoscope benchmark: {h['system']}", body)


def _mode_markdown(m: BenchMode) -> list[str]:
    """One score mode's Markdown section: its mean AUC and pAUC, a table row per set, notes."""
    cols = _columns(m)
    head = " | ".join(
        [
            "set",
            "normal",
            "anom.",
            *(label for _, label in cols),
            "train s / fold",
            "score ms / clip",
        ]
    )
    lines = [
        f"## {m.title}",
        "",
        f"Mean AUC **{fmt(m.mean('auc'))}** · mean pAUC {fmt(m.mean('pauc'))} (`{m.path}`)",
        "",
        f"| {head} |",
        "| --- |" + " ---: |" * (len(cols) + 4),
    ]
    for s in m.sets:
        cells = " | ".join(
            fmt(s.means[k])
            + (
                f" ± {s.spreads[k]:.3f}"
                if s.spreads[k] is not None and s.means[k] is not None
                else ""
            )
            for k, _ in cols
        )
        lines.append(
            f"| {s.name} | {shown(s.n_normal)} | {shown(s.n_anomaly)} | {cells} | "
            f"{_seconds(s.train_seconds)} | {_seconds(s.score_ms)} |"
        )
    lines += [""] + [f"> {n}" for n in _notes(m)] + ([""] if _notes(m) else [])
    return lines


def render_bench_markdown(
    modes: Sequence[BenchMode], folder: Path, chart: Picture | None, files_dir: str
) -> str:
    """The Markdown twin of `render_bench_html`."""
    h = _headline(modes)
    lines = [
        f"# Stethoscope benchmark: {h['system']}",
        "",
        f"Data: `{h['data']}` · {h['folds']} "
        "folds · "
        f"{h['sets']} sets · metrics are means over folds ± their standard deviation over "
        "folds",
        "",
    ]
    if chart:
        lines += [f"![{chart.alt}]({files_dir}/{chart.name})", "", f"*{chart.caption}*", ""]
    for m in modes:
        lines += _mode_markdown(m)
    comparison = read_comparison(folder)
    lines += comparison_markdown(comparison) if comparison else []
    r = reproducibility(modes[0].data, folder)
    lines += (
        ["## Reproducibility", ""]
        + [f"- {k}: `{v}`" for k, v in r["facts"]]
        + [
            f"- regenerate: `stethoscope report --results {folder} --out report.html`",
            "",
            "```json",
            json.dumps(modes[0].data.get("params") or r["config"], indent=2, default=str),
            "```",
            "",
        ]
    )
    return "\n".join(lines)
