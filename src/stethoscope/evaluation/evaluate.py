"""Turn scored clips into the DCASE result tables (results.json) and a printable summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .dcase_io import ScoredClip
from .metrics import (
    auc,
    hmean,
    jackknife_ci95,
    official_score,
    official_score_terms,
    pauc,
    section_metrics,
)

TABLE_KEYS = ("auc_source", "auc_target", "auc", "pauc", "precision", "recall", "f1")
TERM_NAMES = {"auc_source": "AUC-s", "auc_target": "AUC-t", "auc": "AUC", "pauc": "pAUC"}


def evaluate(results: Sequence[ScoredClip]) -> dict[str, Any]:
    """Per machine and section metrics, per-machine means, official score and jackknife CIs.

    Unlabelled clips are ignored; sections lacking normals or anomalies are listed under
    ``skipped`` with the reason rather than silently dropped.
    """
    labelled = [r for r in results if r.label is not None]
    machines: dict[str, Any] = {}
    skipped: list[str] = []
    all_sections: list[dict] = []
    groups: dict[tuple[str, str], list[ScoredClip]] = {}
    for r in labelled:
        groups.setdefault((r.machine, r.section_tag), []).append(r)
    for (machine, tag), rows in sorted(groups.items()):
        y = [r.label for r in rows if r.label is not None]  # all of them: rows are labelled
        if len(set(y)) < 2:
            skipped.append(f"{machine} {tag}: needs normal and anomalous clips")
            continue
        sec = section_metrics(
            y, [r.score for r in rows], [r.domain for r in rows], [r.decision for r in rows]
        )
        machines.setdefault(machine, {"sections": {}})["sections"][tag] = sec
        all_sections.append(sec)
    for entry in machines.values():
        secs = list(entry["sections"].values())
        entry["mean"] = _means(secs, np.mean)
        entry["hmean"] = _means(secs, hmean)
        entry["official_score"] = official_score(secs)
    out: dict[str, Any] = {
        "machines": machines,
        "official_score": official_score(all_sections),
        "n_clips": len(results),
        "n_labelled": len(labelled),
        "skipped": skipped,
    }
    if all_sections:
        out["arithmetic_mean"] = _means(all_sections, np.mean)
        y = [
            r.label
            for r in labelled
            if (r.machine, r.section_tag) in groups and r.label is not None
        ]
        s = [r.score for r in labelled if (r.machine, r.section_tag) in groups]
        if len(set(y)) == 2 and len(y) > 2:
            out["ci95"] = {
                "auc": jackknife_ci95(auc, y, s)[1],
                "pauc": jackknife_ci95(pauc, y, s)[1],
            }
            out["ci95_dcase_evaluator"] = {  # the official evaluator's (much narrower) formula
                "auc": jackknife_ci95(auc, y, s, dcase_evaluator=True)[1],
                "pauc": jackknife_ci95(pauc, y, s, dcase_evaluator=True)[1],
            }
    return out


def _means(sections: Sequence[dict], fn) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in TABLE_KEYS:
        vals = [s[key] for s in sections if s.get(key) is not None]
        out[key] = float(fn(vals)) if vals else None
    return out


def describe_official_score(sections: Sequence[tuple[str, dict]]) -> str:
    """What the official score of these ``(tag, metrics)`` sections averages, in words.

    The terms follow the layout (`official_score_terms`): AUC-s, AUC-t and pAUC where sections
    have domains (2021+), AUC and pAUC where they have none (2020's machine IDs).
    """
    if not sections:
        return "not available: no section has both normal and anomalous clips"
    used = {k for _, sec in sections for k in official_score_terms(sec)}
    names = [name for key, name in TERM_NAMES.items() if key in used]
    unit = "machine ID" if all(tag.startswith("id_") for tag, _ in sections) else "section"
    text = (
        f"harmonic mean of {', '.join(names[:-1])} and {names[-1]} over {len(sections)} "
        f"{unit}{'s' if len(sections) != 1 else ''}"
    )
    return text + (
        " (AUC where a section has no domains)" if "auc" in used and len(used) > 2 else ""
    )


def evaluated_sections(evaluation: dict[str, Any]) -> list[tuple[str, dict]]:
    """Every evaluated ``(tag, metrics)`` section of every machine type of an `evaluate` result."""
    return [
        (tag, sec)
        for entry in (evaluation.get("machines") or {}).values()
        for tag, sec in (entry.get("sections") or {}).items()
    ]


def format_table(evaluation: dict[str, Any]) -> str:
    """A plain-text table of the per-section metrics (what the CLI prints)."""
    cols = ("AUC-s", "AUC-t", "AUC", "pAUC", "prec", "recall", "F1")
    lines = [f"{'machine':<14}{'section':<12}" + "".join(f"{c:>8}" for c in cols)]

    def fmt(v: float | None) -> str:
        return f"{v:8.3f}" if v is not None else f"{'-':>8}"

    for machine, entry in evaluation["machines"].items():
        for tag, sec in entry["sections"].items():
            lines.append(f"{machine:<14}{tag:<12}" + "".join(fmt(sec.get(k)) for k in TABLE_KEYS))
        lines.append(
            f"{machine:<14}{'mean':<12}" + "".join(fmt(entry["mean"].get(k)) for k in TABLE_KEYS)
        )
    score = evaluation.get("official_score")
    if score is not None:
        lines.append(
            "official score "
            f"({describe_official_score(evaluated_sections(evaluation))}): {score:.4f}"
        )
    ci = evaluation.get("ci95")
    if ci:
        lines.append(
            f"95% CI half-width (jackknife over clips): AUC ±{ci['auc']:.3f}, pAUC "
            f"±{ci['pauc']:.3f}"
        )
    for s in evaluation.get("skipped", []):
        lines.append(f"skipped: {s}")
    return "\n".join(lines)
