"""The report's Markdown twin: the same content as the HTML page, as plain text.

Tables and notes become Markdown; figures are linked from ``<stem>_files/`` (written beside
the page) instead of inlined, since Markdown has no portable way to embed them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .content import MachinePart, clip_counts, fmt, headline, reproducibility


def _quoted(notes: Sequence[str]) -> list[str]:
    """Notes as block quotes, followed by a blank line when there are any."""
    return [f"> {n}" for n in notes] + ([""] if notes else [])


def render_markdown(results: dict[str, Any], parts: Sequence[MachinePart], notes: Sequence[str],
                    files_dir: str, results_dir: Path) -> str:
    """The whole document; ``files_dir`` is the name of the folder the figures are linked from."""
    h = headline(results)
    ci = lambda v: f" ± {v:.3f}" if v is not None else ""  # noqa: E731
    lines = [f"# Stethoscope report: {h['system']}", "", f"Data: `{h['data']}`", "",
             f"**Official score {fmt(h['official'])}** (harmonic mean of AUC-s, AUC-t, pAUC) · "
             f"AUC {fmt(h['auc'])}{ci(h['ci_auc'])} · pAUC {fmt(h['pauc'])}{ci(h['ci_pauc'])} "
             f"(95% CI half-widths, jackknife over pooled clips) · {h['n_clips']} clips, "
             f"{h['n_labelled'] or 0} labelled", ""]
    lines += _quoted(notes)
    for part in parts:
        lines += [f"## {part.name}", ""]
        if part.official_score is not None:
            lines += [f"Official score **{fmt(part.official_score)}** · {part.counts} test clips", ""]
        else:
            lines += [f"{part.counts} test clips", ""]
        if part.rows:
            lines.append("| section | " + " | ".join(label for _, label in part.columns) + " | normal / anom. |")
            lines.append("| --- |" + " ---: |" * (len(part.columns) + 1))
            for label, kind, m in part.rows:
                name = f"**{label}**" if kind == "mean" else label
                cells = " | ".join(fmt(m.get(k)) for k, _ in part.columns)
                lines.append(f"| {name} | {cells} | {clip_counts(m)} |")
            lines.append("")
        lines += _quoted(part.notes)
        for p in part.charts + part.maps:
            lines += [f"![{p.alt}]({files_dir}/{p.name})", "", f"*{p.caption}*", ""]
    r = reproducibility(results)
    lines += ["## Reproducibility", "", f"- seed: {r['seed']}", f"- command: `{r['command']}`",
              f"- python {r['python']} on {r['platform']}, run at {r['time']} UTC",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()),
              f"- regenerate: `stethoscope report --results {results_dir} --out report.html`", "",
              "```json", json.dumps(r["config"], indent=2, default=str), "```", ""]
    return "\n".join(lines)
