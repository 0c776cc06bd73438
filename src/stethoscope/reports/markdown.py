"""The report's Markdown twin: the same content as the HTML page, as plain text.

Tables and notes become Markdown; figures are linked from ``<stem>_files/`` (written beside
the page) and clips by their path relative to the page, since Markdown has no portable way to
embed either. Missing values print as the HTML prints them (a dash, or left out), never ``None``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .content import MachinePart, clip_counts, fmt, headline, reproducibility
from .figures import Picture


def _quoted(notes: Sequence[str]) -> list[str]:
    """Notes as block quotes, followed by a blank line when there are any."""
    return [f"> {n}" for n in notes] + ([""] if notes else [])


def _link(path: Path, page_dir: Path) -> str:
    """``path`` as a link target relative to the page's folder (absolute where none exists)."""
    try:
        return quote(Path(os.path.relpath(path.resolve(), page_dir.resolve())).as_posix())
    except ValueError:
        return path.resolve().as_uri()


def _figure(p: Picture, files_dir: str, page_dir: Path) -> list[str]:
    listen = f" · [listen to the clip]({_link(p.audio, page_dir)})" if p.audio is not None else ""
    return [f"![{p.alt}]({files_dir}/{p.name})", "", f"*{p.caption}*{listen}", ""]


def _part_table(part: MachinePart) -> list[str]:
    """A machine's table: one row per section (means in bold, skipped ones in italics)."""
    if not part.rows:
        return []
    lines = [
        "| section | " + " | ".join(label for _, label in part.columns) + " | normal / anom. |",
        "| --- |" + " ---: |" * (len(part.columns) + 1),
    ]
    for label, kind, m in part.rows:
        name = f"**{label}**" if kind == "mean" else f"*{label}*" if kind == "skipped" else label
        cells = " | ".join(fmt(m.get(k)) for k, _ in part.columns)
        lines.append(f"| {name} | {cells} | {clip_counts(m)} |")
    lines.append("")
    return lines


def render_markdown(
    results: dict[str, Any],
    parts: Sequence[MachinePart],
    notes: Sequence[str],
    files_dir: str,
    results_dir: Path,
    page_dir: Path,
) -> str:
    """The whole document; ``files_dir`` is the name of the folder the figures are linked from."""
    h = headline(results)
    ci = lambda v: f" ± {v:.3f}" if v is not None else ""  # noqa: E731
    lines = [
        f"# Stethoscope report: {h['system']}",
        "",
        f"Data: `{h['data']}`",
        "",
        f"**Official score {fmt(h['official'])}** ({h['official_meaning']}) · "
        f"AUC {fmt(h['auc'])}{ci(h['ci_auc'])} · pAUC {fmt(h['pauc'])}{ci(h['ci_pauc'])} "
        f"(95% CI half-widths, jackknife over pooled clips) · {h['n_clips']} clips, "
        f"{h['n_labelled']} labelled",
        "",
    ]
    lines += _quoted(notes)
    for part in parts:
        lines += [f"## {part.name}", ""]
        if part.official_score is not None:
            lines += [
                f"Official score **{fmt(part.official_score)}** ({part.official_meaning}) · "
                f"{part.counts} test clips",
                "",
            ]
        else:
            lines += [f"{part.counts} test clips", ""]
        lines += _part_table(part)
        lines += _quoted(part.notes)
        for p in part.charts + part.maps:
            lines += _figure(p, files_dir, page_dir)
    r = reproducibility(results, results_dir)
    versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items()) or "not recorded"
    lines += ["## Reproducibility", ""] + [f"- {k}: `{v}`" for k, v in r["facts"]]
    lines += [
        f"- versions: {versions}",
        f"- regenerate: `stethoscope report --results {results_dir} --out report.html`",
        "",
        "```json",
        json.dumps(r["config"], indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)
