"""The self-contained HTML page of a report: inline CSS, PNGs as data URIs, no external fetches.

Renders what `content` computed: the headline, per machine type a colour-coded metrics
table with its figures, and the reproducibility footer. Everything lives in the one file so
it can be mailed or archived.
"""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any, Sequence

from .content import MachinePart, clip_counts, fmt, headline, reproducibility
from .figures import MAX_FPR, Picture, slug


def _quality_class(v: Any) -> str:
    """Colour bin of a metric in [0, 1]: orange below chance, then light to dark blue."""
    if v is None:
        return "na"
    for bound, cls in ((0.5, "q-bad"), (0.6, "q0"), (0.7, "q1"), (0.8, "q2"), (0.9, "q3")):
        if v < bound:
            return cls
    return "q4"


def _data_uri(png: bytes) -> str:
    """``png`` as a ``data:`` URI, to inline it in the page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


CSS = """
:root{--bg:#f5f6f8;--card:#fff;--ink:#1f2328;--muted:#5b6470;--line:#e3e6ea;--accent:#1d4ed8;
--shadow:0 1px 2px rgba(16,24,40,.05),0 1px 3px rgba(16,24,40,.08)}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.55;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;
-webkit-font-smoothing:antialiased}
.wrap{max-width:1160px;margin:0 auto;padding:40px 24px 64px}
.eyebrow{text-transform:uppercase;letter-spacing:.08em;font-size:.75rem;font-weight:600;color:var(--accent)}
h1{font-size:2rem;line-height:1.2;margin:.25rem 0 .5rem;letter-spacing:-.01em}
h2{font-size:1.45rem;margin:0;letter-spacing:-.01em}
h3{font-size:1rem;margin:1.75rem 0 .75rem;color:var(--muted);font-weight:600}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;
background:#eef0f3;padding:.1em .35em;border-radius:4px;word-break:break-all}
.sub{color:var(--muted);margin:0 0 1.5rem}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:16px;margin:1.5rem 0 1rem}
.kpi{background:var(--card);border-radius:14px;padding:18px 20px;box-shadow:var(--shadow)}
.kpi .label{font-size:.8rem;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.05em}
.kpi .value{font-size:2.1rem;font-weight:700;font-variant-numeric:tabular-nums;line-height:1.2;margin-top:4px}
.kpi .value small{font-size:1rem;font-weight:500;color:var(--muted)}
.kpi .hint{font-size:.8rem;color:var(--muted);margin-top:2px}
.kpi.main{background:linear-gradient(135deg,#1d4ed8,#1e40af);color:#fff}
.kpi.main .label,.kpi.main .hint,.kpi.main .value small{color:#dbe4ff}
nav.toc{display:flex;flex-wrap:wrap;gap:8px;margin:1rem 0 2rem}
nav.toc a{background:var(--card);box-shadow:var(--shadow);border-radius:999px;padding:6px 14px;
color:var(--ink);text-decoration:none;font-weight:500;font-size:.9rem}
nav.toc a:hover{background:#e8eefc}
nav.toc a span{color:var(--muted);font-variant-numeric:tabular-nums;margin-left:6px}
.card{background:var(--card);border-radius:16px;box-shadow:var(--shadow);padding:24px 28px;margin:0 0 28px}
.card-head{display:flex;align-items:baseline;justify-content:space-between;gap:16px;flex-wrap:wrap}
.badge{display:inline-block;border-radius:999px;padding:4px 12px;font-weight:600;font-size:.9rem;
font-variant-numeric:tabular-nums}
.counts{color:var(--muted);font-size:.9rem;margin:.25rem 0 0}
.table-wrap{overflow-x:auto;margin-top:1rem}
table{border-collapse:separate;border-spacing:0;width:100%;font-variant-numeric:tabular-nums;font-size:.92rem}
th{font-weight:600;color:var(--muted);text-align:right;padding:8px 10px;border-bottom:1px solid var(--line);
font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td{padding:6px 10px;text-align:right;border-bottom:1px solid #f0f1f3;white-space:nowrap}
td.m{padding:4px 6px}
td.m span{display:block;border-radius:6px;padding:3px 8px}
tr.mean td{font-weight:600}
tr.mean:first-of-type td,tr.mean td{border-top:1px solid var(--line)}
.q-bad{background:#ffe3cc;color:#7c2d00}.q0{background:#eef0f3;color:#374151}.q1{background:#dbeafe;color:#1e3a8a}
.q2{background:#bfdbfe;color:#1e3a8a}.q3{background:#8db8fb;color:#0f1d4a}.q4{background:#1d4ed8;color:#fff}
.na{color:#9aa1ab}
.legend{display:flex;flex-wrap:wrap;gap:6px;align-items:center;font-size:.78rem;color:var(--muted);margin-top:10px}
.legend span.sw{border-radius:4px;padding:1px 8px;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:20px}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:12px;padding:10px;overflow:hidden}
figure img{display:block;width:100%;height:auto;border-radius:6px}
figcaption{font-size:.82rem;color:var(--muted);margin:8px 4px 2px}
.note{background:#fff8e6;border:1px solid #f5d48a;color:#5c4300;border-radius:10px;padding:10px 14px;
margin:12px 0 0;font-size:.9rem}
footer{margin-top:40px;color:var(--muted);font-size:.88rem}
footer .card{color:var(--ink)}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:6px 18px;margin:0}
dl.kv dt{color:var(--muted);font-weight:600}
dl.kv dd{margin:0;font-variant-numeric:tabular-nums}
.chips{display:flex;flex-wrap:wrap;gap:8px}
.chips span{background:#eef0f3;border-radius:999px;padding:3px 12px;font-size:.85rem;color:var(--muted)}
.chips b{color:var(--ink);font-weight:600;font-variant-numeric:tabular-nums}
details{margin-top:14px}summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:8px;padding:12px 14px;overflow-x:auto;
font-size:.8rem;line-height:1.45}
@media (max-width:560px){.grid{grid-template-columns:1fr}.card{padding:18px}}
"""


def _metric_cell(v: Any) -> str:
    """A table cell, coloured by the metric's quality bin."""
    return f'<td class="m"><span class="{_quality_class(v)}">{fmt(v)}</span></td>'


def _notes_html(notes: Sequence[str]) -> str:
    """Notes as highlighted paragraphs."""
    return "".join(f'<p class="note">{escape(n)}</p>' for n in notes)


def _html_machine(part: MachinePart) -> str:
    """One machine type's card: badge, metrics table, notes, charts and anomaly maps."""
    out = [f'<section class="card" id="m-{escape(slug(part.name))}"><div class="card-head">'
           f"<h2>{escape(part.name)}</h2>"]
    if part.official_score is not None:
        out.append(f'<span class="badge {_quality_class(part.official_score)}" title="harmonic mean of AUC-s, AUC-t '
                   f'and pAUC over sections">official score {fmt(part.official_score)}</span>')
    out.append(f'</div><p class="counts">{escape(part.counts)} test clips</p>')
    if part.rows:
        head = "".join(f"<th>{escape(label)}</th>" for _, label in part.columns)
        out.append(f'<div class="table-wrap"><table><thead><tr><th>section</th>{head}<th>normal / anom.</th></tr>'
                   "</thead><tbody>")
        for label, kind, m in part.rows:
            cells = "".join(_metric_cell(m.get(k)) for k, _ in part.columns)
            out.append(f'<tr class="{kind}"><td>{escape(label)}</td>{cells}<td>{clip_counts(m)}</td></tr>')
        out.append("</tbody></table></div>")
    out.append(_notes_html(part.notes))
    if part.charts:
        out.append("<h3>Detection</h3><div class=\"grid\">" + "".join(_html_figure(p) for p in part.charts) + "</div>")
    if part.maps:
        out.append("<h3>Anomaly maps: where the model fails to reconstruct the clip (same colour scale for all)</h3>"
                   '<div class="grid">' + "".join(_html_figure(p) for p in part.maps) + "</div>")
    out.append("</section>")
    return "".join(out)


def _html_figure(p: Picture) -> str:
    """A figure with the PNG inlined and its caption."""
    return (f'<figure><img src="{_data_uri(p.png)}" alt="{escape(p.alt)}" loading="lazy">'
            f"<figcaption>{escape(p.caption)}</figcaption></figure>")


def _legend_html() -> str:
    """The key to the table's cell colours."""
    bins = (("q-bad", "< 0.5"), ("q0", "0.5–0.6"), ("q1", "0.6–0.7"), ("q2", "0.7–0.8"), ("q3", "0.8–0.9"),
            ("q4", "≥ 0.9"))
    return ('<div class="legend">cell colours:' + "".join(f'<span class="sw {c}">{t}</span>' for c, t in bins)
            + "<span>· AUC 0.5 = chance</span></div>")


def render_html(results: dict[str, Any], parts: Sequence[MachinePart], notes: Sequence[str], results_dir: Path) -> str:
    """The whole page; ``notes`` are report-wide (skipped sets, missing scores)."""
    h = headline(results)
    ci_auc = f" <small>± {h['ci_auc']:.3f}</small>" if h["ci_auc"] is not None else ""
    ci_pauc = f" <small>± {h['ci_pauc']:.3f}</small>" if h["ci_pauc"] is not None else ""
    unavailable = "not available: no section has both normal and anomalous clips"
    kpis = [("main", "official score", fmt(h["official"]),
             "harmonic mean of AUC-s, AUC-t, pAUC" if h["official"] is not None else unavailable),
            ("", "AUC", fmt(h["auc"]) + ci_auc, "mean over sections · ± 95% CI (jackknife, pooled clips)"),
            ("", "pAUC", fmt(h["pauc"]) + ci_pauc, f"FPR ≤ {MAX_FPR:g}, McClish-standardised"),
            ("", "clips", str(h["n_clips"] if h["n_clips"] is not None else "–"),
             f"{h['n_labelled'] or 0} labelled · {len(parts)} machine type{'s' if len(parts) != 1 else ''}")]
    kpi_html = "".join(f'<div class="kpi {c}"><div class="label">{escape(l)}</div><div class="value">{v}</div>'
                       f'<div class="hint">{escape(t)}</div></div>' for c, l, v, t in kpis)
    toc = "".join(f'<a href="#m-{escape(slug(p.name))}">{escape(p.name)}<span>{fmt(p.official_score)}</span></a>'
                  for p in parts)
    r = reproducibility(results)
    versions = "".join(f"<span>{escape(k)} <b>{escape(str(v))}</b></span>" for k, v in r["versions"].items())
    facts = [("seed", r["seed"]), ("command", r["command"]), ("python", r["python"]), ("platform", r["platform"]),
             ("run at (UTC)", r["time"]), ("results folder", str(results_dir))]
    facts_html = "".join(f"<dt>{escape(k)}</dt><dd><code>{escape(str(v))}</code></dd>"
                         for k, v in facts if v is not None)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Stethoscope report: {escape(h['system'])}</title>
<style>{CSS}</style></head>
<body><main class="wrap">
<div class="eyebrow">Stethoscope · anomalous sound detection report</div>
<h1>{escape(h['system'])}</h1>
<p class="sub">data <code>{escape(h['data'])}</code></p>
<div class="kpis">{kpi_html}</div>
{_legend_html()}
{_notes_html(notes)}
<nav class="toc" aria-label="machine types">{toc}</nav>
{''.join(_html_machine(p) for p in parts)}
<footer><section class="card"><h2>Reproducibility</h2>
<p class="counts">Regenerate this page with
<code>stethoscope report --results {escape(str(results_dir))} --out report.html</code></p>
<h3>Run</h3><dl class="kv">{facts_html}</dl>
<h3>Versions</h3><div class="chips">{versions or '<span>not recorded</span>'}</div>
<details><summary>Configuration</summary><pre>{escape(json.dumps(r['config'], indent=2, default=str))}</pre></details>
</section>
<p>Made by Stethoscope. Scores: higher = more anomalous. Self-contained: no external resources.</p></footer>
</main></body></html>
"""
