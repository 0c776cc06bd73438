"""What every report page shares: the stylesheet, the page frame, metric cells, figures and
audio players.

Pages are self-contained: CSS inline, images and (small) audio clips as ``data:`` URIs, one
small inline script at most, nothing fetched from elsewhere, so they can be mailed or archived.
A clip above `AUDIO_EMBED_LIMIT` bytes is linked by its path relative to the page instead of
embedded, to keep the page small; its player works while the audio stays where it was.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .content import fmt
from .figures import Picture

# bytes: a 10 s, 16 kHz, 16-bit mono WAV (320 kB) is embedded, a 10 s 48 kHz 24-bit stereo one (2.9
# MB) linked
AUDIO_EMBED_LIMIT = 1_000_000
AUDIO_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}
QUALITY_BINS = (
    (0.5, "q-bad", "< 0.5"),
    (0.6, "q0", "0.5–0.6"),
    (0.7, "q1", "0.6–0.7"),
    (0.8, "q2", "0.7–0.8"),
    (0.9, "q3", "0.8–0.9"),
    (None, "q4", "≥ 0.9"),
)

CSS = """
:root{--bg:#f5f6f8;--card:#fff;--ink:#1f2328;--muted:#5b6470;--line:#e3e6ea;--accent:#1d4ed8;
--shadow:0 1px 2px rgba(16,24,40,.05),0 1px 3px rgba(16,24,40,.08)}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);line-height:1.55;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;
-webkit-font-smoothing:antialiased}
.wrap{max-width:1160px;margin:0 auto;padding:40px 24px 64px}
.eyebrow{text-transform:uppercase;letter-spacing:.08em;font-size:.75rem;font-weight:600;
color:var(--accent)}
h1{font-size:2rem;line-height:1.2;margin:.25rem 0 .5rem;letter-spacing:-.01em}
h2{font-size:1.45rem;margin:0;letter-spacing:-.01em}
h3{font-size:1rem;margin:1.75rem 0 .75rem;color:var(--muted);font-weight:600}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em;
background:#eef0f3;padding:.1em .35em;border-radius:4px;word-break:break-all}
.sub{color:var(--muted);margin:0 0 1.5rem}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:16px;
margin:1.5rem 0 1rem}
.kpi{background:var(--card);border-radius:14px;padding:18px 20px;box-shadow:var(--shadow)}
.kpi .label{font-size:.8rem;color:var(--muted);font-weight:600;text-transform:uppercase;
letter-spacing:.05em}
.kpi .value{font-size:2.1rem;font-weight:700;font-variant-numeric:tabular-nums;line-height:1.2;
margin-top:4px}
.kpi .value small{font-size:1rem;font-weight:500;color:var(--muted)}
.kpi .hint{font-size:.8rem;color:var(--muted);margin-top:2px}
.kpi.main{background:linear-gradient(135deg,#1d4ed8,#1e40af);color:#fff}
.kpi.main .label,.kpi.main .hint,.kpi.main .value small{color:#dbe4ff}
nav.toc{display:flex;flex-wrap:wrap;gap:8px;margin:1rem 0 2rem}
nav.toc a{background:var(--card);box-shadow:var(--shadow);border-radius:999px;padding:6px 14px;
color:var(--ink);text-decoration:none;font-weight:500;font-size:.9rem}
nav.toc a:hover{background:#e8eefc}
nav.toc a span{color:var(--muted);font-variant-numeric:tabular-nums;margin-left:6px}
.card{background:var(--card);border-radius:16px;box-shadow:var(--shadow);padding:24px 28px;
margin:0 0 28px}
.card-head{display:flex;align-items:baseline;justify-content:space-between;gap:16px;flex-wrap:wrap}
.badge{display:inline-block;border-radius:999px;padding:4px 12px;font-weight:600;font-size:.9rem;
font-variant-numeric:tabular-nums}
.counts{color:var(--muted);font-size:.9rem;margin:.25rem 0 0}
.table-wrap{overflow-x:auto;margin-top:1rem}
table{border-collapse:separate;border-spacing:0;width:100%;font-variant-numeric:tabular-nums;
font-size:.92rem}
th{font-weight:600;color:var(--muted);text-align:right;padding:8px 10px;
border-bottom:1px solid var(--line);
font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
td{padding:6px 10px;text-align:right;border-bottom:1px solid #f0f1f3;white-space:nowrap}
td.m{padding:4px 6px}
td.m span{display:block;border-radius:6px;padding:3px 8px}
tr.mean td{font-weight:600}
tr.mean:first-of-type td,tr.mean td{border-top:1px solid var(--line)}
.q-bad{background:#ffe3cc;color:#7c2d00}.q0{background:#eef0f3;color:#374151}.q1{background:#dbeafe;
color:#1e3a8a}
.q2{background:#bfdbfe;color:#1e3a8a}.q3{background:#8db8fb;color:#0f1d4a}.q4{background:#1d4ed8;
color:#fff}
.na{color:#9aa1ab}
.legend{display:flex;flex-wrap:wrap;gap:6px;align-items:center;font-size:.78rem;color:var(--muted);
margin-top:10px}
.legend span.sw{border-radius:4px;padding:1px 8px;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:20px}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:12px;padding:10px;
overflow:hidden}
figure img{display:block;width:100%;height:auto;border-radius:6px}
figcaption{font-size:.82rem;color:var(--muted);margin:8px 4px 2px}
.note{background:#fff8e6;border:1px solid #f5d48a;color:#5c4300;border-radius:10px;
padding:10px 14px;
margin:12px 0 0;font-size:.9rem}
footer{margin-top:40px;color:var(--muted);font-size:.88rem}
footer .card{color:var(--ink)}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:6px 18px;margin:0}
dl.kv dt{color:var(--muted);font-weight:600}
dl.kv dd{margin:0;font-variant-numeric:tabular-nums}
.chips{display:flex;flex-wrap:wrap;gap:8px}
.chips span{background:#eef0f3;border-radius:999px;padding:3px 12px;font-size:.85rem;
color:var(--muted)}
.chips b{color:var(--ink);font-weight:600;font-variant-numeric:tabular-nums}
details{margin-top:14px}summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:8px;padding:12px 14px;
overflow-x:auto;
font-size:.8rem;line-height:1.45}
tr.skipped td{color:var(--muted);font-style:italic}
figure audio{display:block;width:100%;margin-top:8px}
.filter{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin:12px 0 8px}
.filter input{font:inherit;padding:6px 10px;border:1px solid var(--line);border-radius:8px;
min-width:280px}
.clips-wrap{max-height:560px;overflow:auto;border:1px solid var(--line);border-radius:10px}
.clips-wrap th{position:sticky;top:0;background:var(--card);cursor:pointer;user-select:none}
.clips-wrap th::after{content:" ↕";color:#c2c7cf}
.clips-wrap th[aria-sort=ascending]::after{content:" ▲";color:var(--accent)}
.clips-wrap th[aria-sort=descending]::after{content:" ▼";color:var(--accent)}
.clips-wrap td.anom{color:#9a3412;font-weight:600}
.clips-wrap th,.clips-wrap td{text-align:left}.clips-wrap .num{text-align:right}
@media (max-width:560px){.grid{grid-template-columns:1fr}.card{padding:18px}}
"""


def quality_class(v: Any) -> str:
    """Colour bin of a metric in [0, 1]: orange below chance, then light to dark blue."""
    if v is None:
        return "na"
    return next(cls for bound, cls, _ in QUALITY_BINS if bound is None or v < bound)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """``data`` as a ``data:`` URI, to inline it in the page."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def metric_cell(v: Any, spread: float | None = None) -> str:
    """A table cell, coloured by the metric's quality bin; ``spread`` is printed as ``± s``."""
    extra = f" <small>± {spread:.3f}</small>" if spread is not None and v is not None else ""
    return f'<td class="m"><span class="{quality_class(v)}">{fmt(v)}{extra}</span></td>'


def notes_html(notes: Sequence[str]) -> str:
    """Notes as highlighted paragraphs."""
    return "".join(f'<p class="note">{escape(n)}</p>' for n in notes)


def legend_html() -> str:
    """The key to the tables' cell colours."""
    return (
        '<div class="legend">cell colours:'
        + "".join(f'<span class="sw {c}">{t}</span>' for _, c, t in QUALITY_BINS)
        + "<span>· AUC 0.5 = chance</span></div>"
    )


def audio_src(path: Path, page_dir: Path) -> tuple[str, bool]:
    """(src, embedded): a ``data:`` URI up to `AUDIO_EMBED_LIMIT` bytes, else the path relative to
    the page."""
    if path.stat().st_size <= AUDIO_EMBED_LIMIT:
        return data_uri(path.read_bytes(), AUDIO_MIME.get(path.suffix.lower(), "audio/wav")), True
    try:
        return quote(Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix()), False
    except ValueError:  # another drive (Windows): no relative path exists
        return path.resolve().as_uri(), False


def audio_html(path: Path, page_dir: Path) -> str:
    """An ``<audio controls>`` player of ``path`` (embedded or linked, see `audio_src`)."""
    src, embedded = audio_src(path, page_dir)
    if embedded:
        return f'<audio controls preload="metadata" src="{escape(src)}"></audio>'
    size = path.stat().st_size / 1e6
    return (
        f'<audio controls preload="none" src="{escape(src)}"></audio>'
        f"<figcaption>{size:.1f} MB: linked from <code>{escape(str(path))}</code>, not "
        "embedded</figcaption>"
    )


def figure_html(p: Picture, page_dir: Path) -> str:
    """A figure with the PNG inlined, its caption and, when it shows a clip, a player of the
    clip."""
    player = audio_html(p.audio, page_dir) if p.audio is not None and p.audio.exists() else ""
    return (
        f'<figure><img src="{data_uri(p.png)}" alt="{escape(p.alt)}">'
        f"<figcaption>{escape(p.caption)}</figcaption>{player}</figure>"
    )


def kpis_html(kpis: Sequence[tuple[str, str, str, str]]) -> str:
    """Headline tiles from ``(css class, label, value HTML, hint)``."""
    return "".join(
        f'<div class="kpi {cls}"><div class="label">{escape(label)}</div><div '
        f'class="value">{value}</div>'
        f'<div class="hint">{escape(hint)}</div></div>'
        for cls, label, value, hint in kpis
    )


def facts_html(facts: Sequence[tuple[str, str]]) -> str:
    """Label/value pairs as a definition list."""
    return (
        '<dl class="kv">'
        + "".join(f"<dt>{escape(k)}</dt><dd><code>{escape(v)}</code></dd>" for k, v in facts)
        + "</dl>"
    )


def page(title: str, body: str, script: str = "") -> str:
    """The whole HTML document around ``body``; ``script`` is inlined at the end of the body."""
    script_html = f"<script>{script}</script>" if script else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}</style></head>
<body><main class="wrap">
{body}
</main>{script_html}</body></html>
"""
