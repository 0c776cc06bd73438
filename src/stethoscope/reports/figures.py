"""The report's detection charts: ROC curves and score histograms of one machine type.

Each chart comes back as a `Picture` (PNG bytes plus alt text and caption), so the same
rendering serves the HTML page (inlined as a data URI) and the Markdown twin (a file in
``<stem>_files/<machine key>/``). Figures are drawn outside pyplot (`maps.new_figure`), in one
plot style, with colours that stay apart under red-green colour blindness.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from .maps import figure_png_bytes, new_figure
from .numbers import plain_formatter, readable
from .results import ScoreRow

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

MAX_FPR = 0.1
NORMAL_COLOUR, ANOMALY_COLOUR = (
    "#2563eb",
    "#ea580c",
)  # blue / orange: safe for red-green colour blindness
SECTION_COLOURS = (
    "#2563eb",
    "#ea580c",
    "#059669",
    "#9333ea",
    "#ca8a04",
    "#db2777",
    "#0891b2",
    "#4b5563",
)
PLOT_STYLE: dict[RcKeyType, Any] = {
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.8,
    "axes.edgecolor": "#9ca3af",
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "legend.frameon": False,
}


@dataclass
class Picture:
    """One rendered figure of the report."""

    name: str  # path in <stem>_files/: "<machine key>/<file>.png"
    alt: str
    caption: str
    png: bytes
    audio: Path | None = None  # the clip the figure shows, for a player beside it


def slug(text: str) -> str:
    """``text`` reduced to characters safe in file names and HTML ids."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def unique_slugs(names: Iterable[str]) -> dict[str, str]:
    """A distinct `slug` per name, for anchors and folder names: where two names reduce to the
    same slug (``a b`` and ``a_b``), or differ only in case (a case-insensitive file system
    would merge them), later ones get ``-2``, ``-3``, ... and no result is another's natural
    slug."""
    names = list(dict.fromkeys(names))
    natural = {n: slug(n) for n in names}
    reserved = {s.lower() for s in natural.values()}
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        candidate, i = natural[name], 2
        while candidate.lower() in used or (
            candidate != natural[name] and candidate.lower() in reserved
        ):
            candidate, i = f"{natural[name]}-{i}", i + 1
        used.add(candidate.lower())
        out[name] = candidate
    return out


def roc_picture(machine: str, key: str, rows: Sequence[ScoreRow]) -> Picture | None:
    """ROC curves per section (source and target where domains exist), pAUC region shaded."""
    from sklearn.metrics import roc_auc_score, roc_curve

    sections = sorted({r.section for r in rows})
    curves = []
    for si, sec in enumerate(sections):
        srows = [r for r in rows if r.section == sec]
        y = np.array([r.label for r in srows])
        if len(set(y.tolist())) < 2:
            continue
        s = np.array([r.score for r in srows])
        dom = np.array([r.domain or "" for r in srows])
        domains = [d for d in ("source", "target") if ((dom == d) & (y == 0)).any()]
        for di, d in enumerate(domains or [""]):
            use = (dom == d) | (y == 1) if d else np.ones(len(y), bool)
            fpr, tpr, _ = roc_curve(y[use], s[use])
            colour = SECTION_COLOURS[(di if len(sections) == 1 else si) % len(SECTION_COLOURS)]
            style = "--" if d == "target" else "-"
            name = " ".join(p for p in (sec if len(sections) > 1 else "", d) if p) or "all clips"
            curves.append(
                (fpr, tpr, colour, style, f"{name}  AUC {roc_auc_score(y[use], s[use]):.3f}")
            )
    if not curves:
        return None
    with matplotlib.rc_context(PLOT_STYLE):
        fig = new_figure((5.2, 4.4))
        ax = fig.subplots()
        ax.axvspan(
            0, MAX_FPR, color="#fde68a", alpha=0.45, lw=0, label=f"pAUC region (FPR ≤ {MAX_FPR:g})"
        )
        ax.plot([0, 1], [0, 1], color="#9ca3af", lw=1, ls=":", label="chance")
        for fpr, tpr, colour, style, label in curves:
            ax.plot(fpr, tpr, color=colour, ls=style, lw=2, label=label, drawstyle="steps-post")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1.01),
            xlabel="false positive rate",
            ylabel="true positive rate",
            title=f"{machine}: ROC",
        )
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=8.5)
        png = figure_png_bytes(fig, dpi=120)
    has_domains = any(r.domain for r in rows)
    caption = (
        "ROC curves; AUC-s uses source normals and all anomalies (solid), AUC-t target "
        "normals and all "
        "anomalies (dashed). "
        if has_domains
        else "ROC curves per section. "
    ) + "The shaded band is the region the pAUC averages over."
    return Picture(f"{key}/roc.png", f"ROC curves of {machine}", caption, png)


def histogram_figure(machine: str, rows: Sequence[ScoreRow], threshold: float | None) -> Figure:
    """Score histogram, normal vs anomalous (or all clips when unlabelled), threshold marked.

    The legend sits below the axes, so neither the bars nor the threshold line run through it;
    tick labels are plain numbers (`plain_formatter`: no offset, no scientific notation).
    """
    scores = np.array([r.score for r in rows], dtype=float)
    finite = scores[np.isfinite(scores)]
    log = finite.size > 0 and finite.min() > 0 and finite.max() / finite.min() > 50
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    if threshold is not None and np.isfinite(threshold) and (not log or threshold > 0):
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        hi = lo + 1.0 if not log else lo * 2
    bins = np.geomspace(lo, hi, 31) if log else np.linspace(lo, hi, 31)
    labelled = any(r.label is not None for r in rows)
    groups = (
        [
            ("normal", NORMAL_COLOUR, [r.score for r in rows if r.label == 0]),
            ("anomalous", ANOMALY_COLOUR, [r.score for r in rows if r.label == 1]),
        ]
        if labelled
        else [("all clips (unlabelled)", "#4b5563", list(finite))]
    )
    with matplotlib.rc_context(PLOT_STYLE):
        fig = new_figure((5.2, 4.6))
        ax = fig.subplots()
        for name, colour, vals in groups:
            if vals:
                ax.hist(
                    vals,
                    bins=bins.tolist(),
                    color=colour,
                    alpha=0.55,
                    label=f"{name} ({len(vals)})",
                    edgecolor=colour,
                    linewidth=0.8,
                )
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(
                threshold,
                color="#111827",
                lw=1.8,
                ls="--",
                label=f"decision threshold {readable(threshold)}",
            )
        if log:
            ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plain_formatter(log))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(
            xlabel="anomaly score" + (" (log scale)" if log else ""),
            ylabel="clips",
            title=f"{machine}: score distribution",
        )
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, ax.get_ylim()[1] * 1.05)
        fig.legend(fontsize=8.5, loc="outside lower center", ncols=3)
    return fig


def histogram_picture(
    machine: str, key: str, rows: Sequence[ScoreRow], threshold: float | None
) -> Picture:
    """`histogram_figure` as a report picture."""
    with matplotlib.rc_context(PLOT_STYLE):  # ticks and grid lines are made while drawing
        png = figure_png_bytes(histogram_figure(machine, rows, threshold), dpi=120)
    caption = (
        "Clips to the right of the dashed line are called anomalous (gamma fit to "
        "training scores, "
        "90th percentile)."
        if threshold is not None
        else "No decision threshold was recorded."
    )
    return Picture(f"{key}/scores.png", f"score histogram of {machine}", caption, png)
