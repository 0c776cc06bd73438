"""The HTML page of an evaluation report.

Renders what `content` computed: the headline, per machine type a colour-coded metrics
table with its figures (anomaly maps with a player of each clip), a sortable and filterable
table of every clip, and the reproducibility footer, in one self-contained file (`html_base`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from .clip_table import SCRIPT, clip_table_html
from .content import MachinePart, clip_counts, fmt, headline, reproducibility
from .figures import MAX_FPR
from .html_base import (
    AUDIO_EMBED_LIMIT,
    facts_html,
    figure_html,
    kpis_html,
    legend_html,
    metric_cell,
    notes_html,
    page,
    quality_class,
)
from .results import ScoreRow

MAPS_SCALES = (
    "The input and reconstruction panels of these {n} clips share one dB colour "
    "scale, and their "
    "anomaly maps one error scale, so brightness compares across them."
)


def _html_machine(part: MachinePart, page_dir: Path) -> str:
    """One machine type's card: badge, metrics table, notes, charts and anomaly maps."""
    out = [
        f'<section class="card" id="m-{escape(part.key)}"><div '
        f'class="card-head"><h2>{escape(part.name)}</h2>'
    ]
    if part.official_score is not None:
        out.append(
            f'<span class="badge {quality_class(part.official_score)}" '
            f'title="{escape(part.official_meaning)}">'
            f"official score {fmt(part.official_score)}</span>"
        )
    out.append(
        f'</div><p class="counts">{escape(part.counts)} test clips'
        + (
            f" · official score: {escape(part.official_meaning)}"
            if part.official_score is not None
            else ""
        )
        + "</p>"
    )
    if part.rows:
        head = "".join(f"<th>{escape(label)}</th>" for _, label in part.columns)
        out.append(
            f'<div class="table-wrap"><table><thead><tr><th>section</th>{head}<th>normal / '
            "anom.</th></tr>"
            "</thead><tbody>"
        )
        for label, kind, m in part.rows:
            cells = "".join(metric_cell(m.get(k)) for k, _ in part.columns)
            out.append(
                f'<tr class="{kind}"><td>{escape(label)}</td>{cells}<td>{clip_counts(m)}</td></tr>'
            )
        out.append("</tbody></table></div>")
    out.append(notes_html(part.notes))
    if part.charts:
        out.append(
            '<h3>Detection</h3><div class="grid">'
            + "".join(figure_html(p, page_dir) for p in part.charts)
            + "</div>"
        )
    if part.maps:
        out.append(
            "<h3>Anomaly maps: where the model fails to reconstruct the clip</h3>"
            f'<p class="counts">{MAPS_SCALES.format(n=len(part.maps))}</p><div class="grid">'
            + "".join(figure_html(p, page_dir) for p in part.maps)
            + "</div>"
        )
    out.append("</section>")
    return "".join(out)


def _kpis(h: dict[str, Any], n_parts: int) -> list[tuple[str, str, Any, str]]:
    """The headline cards: official score, AUC and pAUC (with their 95% CI), clip count."""
    ci_auc = f" <small>± {h['ci_auc']:.3f}</small>" if h["ci_auc"] is not None else ""
    ci_pauc = f" <small>± {h['ci_pauc']:.3f}</small>" if h["ci_pauc"] is not None else ""
    kpis = [
        ("main", "official score", fmt(h["official"]), h["official_meaning"]),
        (
            "",
            "AUC",
            fmt(h["auc"]) + ci_auc,
            "mean over sections · ± 95% CI (jackknife, pooled clips)",
        ),
        ("", "pAUC", fmt(h["pauc"]) + ci_pauc, f"FPR ≤ {MAX_FPR:g}, McClish-standardised"),
        (
            "",
            "clips",
            h["n_clips"],
            f"{h['n_labelled']} labelled · {n_parts} machine type{'s' if n_parts != 1 else ''}",
        ),
    ]
    return kpis


def render_html(
    results: dict[str, Any],
    parts: Sequence[MachinePart],
    notes: Sequence[str],
    results_dir: Path,
    rows: Sequence[ScoreRow],
    page_dir: Path,
) -> str:
    """The whole page; ``notes`` are report-wide (skipped sets, missing scores), ``rows`` every
    scored clip, ``page_dir`` the folder the page is written to (audio too large to embed is
    linked from it)."""
    h = headline(results)
    kpis = _kpis(h, len(parts))
    toc = "".join(
        f'<a href="#m-{escape(p.key)}">{escape(p.name)}<span>{fmt(p.official_score)}</span></a>'
        for p in parts
    ) + ('<a href="#all-clips">all clips</a>' if rows else "")
    r = reproducibility(results, results_dir)
    config_json = escape(json.dumps(r["config"], indent=2, default=str))
    versions = "".join(
        f"<span>{escape(k)} <b>{escape(str(v))}</b></span>" for k, v in r["versions"].items()
    )
    body = f"""<div class="eyebrow">Stethoscope · anomalous sound detection report</div>
<h1>{escape(h["system"])}</h1>
<p class="sub">data <code>{escape(h["data"])}</code></p>
<div class="kpis">{kpis_html(kpis)}</div>
{legend_html()}
{notes_html(notes)}
<nav class="toc" aria-label="machine types">{toc}</nav>
{"".join(_html_machine(p, page_dir) for p in parts)}
{clip_table_html(rows)}
<footer><section class="card"><h2>Reproducibility</h2>
<p class="counts">Regenerate this page with
<code>stethoscope report --results {escape(str(results_dir))} --out report.html</code></p>
<h3>Run</h3>{facts_html(r["facts"])}
<h3>Versions</h3><div class="chips">{versions or "<span>not recorded</span>"}</div>
<details><summary>Configuration</summary><pre>{config_json}</pre></details>
</section>
<p>Made by Stethoscope. Scores: higher = more anomalous. Self-contained: images, and clips up to
{AUDIO_EMBED_LIMIT / 1e6:g} MB, are embedded (larger clips are linked by relative path); nothing is
fetched from the network.</p></footer>"""
    return page(f"Stethoscope report: {h['system']}", body, SCRIPT if rows else "")
