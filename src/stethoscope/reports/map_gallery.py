"""The report's anomaly-map gallery of one machine type: the top clips beside a typical one.

Loads the machine's saved model (on the CPU, quietly) and draws, with `maps`, the
most anomalous clips by score and a median-score normal clip. All of them share two colour
scales, one in dB for the input and reconstruction panels and one for the anomaly maps, so
that "what did it hear" and "where does it fail to reconstruct" compare between them.
Whatever prevents a map (no audio paths, no model, a system without maps, a missing file)
becomes a note for the report instead of an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ..data.clip import Clip
from ..engine import RunContext
from ..errors import StethoscopeError
from .figures import Picture, slug
from .maps import (
    FaultRegion,
    MapPanels,
    anomaly_figure,
    decision_title,
    fault_regions_for,
    figure_png_bytes,
    map_panels,
    spectrogram_range,
)
from .results import ScoreRow

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

N_TOP_MAPS = 3
MAP_STYLE: dict[RcKeyType, Any] = {
    "font.size": 9
}  # set while the figures are made and drawn (tick labels are made at drawing)


def _resolve_audio(path: str, results_dir: Path) -> Path | None:
    """``path`` as recorded, or relative to the results folder; None when neither exists."""
    if not path:
        return None
    p = Path(path)
    for candidate in (p, results_dir / p):
        if candidate.exists():
            return candidate
    return None


def _load_model(model_dir: str | None) -> tuple[Any, str | None]:
    """(system, None) or (None, reason)."""
    from ..systems import load_system

    if not model_dir:
        return None, "no model folder is recorded in results.json"
    directory = Path(model_dir)
    if not (directory / "config.json").exists():
        return None, f"the model folder {directory} is missing"
    try:
        return load_system(directory), None
    except (StethoscopeError, KeyError, ValueError, OSError, RuntimeError) as err:
        return None, f"the model in {directory} could not be loaded ({err})"


def _chosen(rows: Sequence[ScoreRow]) -> list[tuple[ScoreRow, str]]:
    """The clips to map, each with its role: the top ``N_TOP_MAPS`` by score, then the median
    normal clip (the median clip where none is labelled)."""
    ranked = sorted(rows, key=lambda r: r.score, reverse=True)
    chosen = [(r, f"most anomalous #{i + 1}") for i, r in enumerate(ranked[:N_TOP_MAPS])]
    normals = [r for r in ranked if r.label == 0] or (
        [] if any(r.label is not None for r in rows) else ranked
    )
    normals = [r for r in normals if r not in [c[0] for c in chosen]]
    if normals:
        chosen.append(
            (
                normals[len(normals) // 2],
                "typical normal clip (median score)"
                if normals[0].label == 0
                else "typical clip (median score)",
            )
        )
    return chosen


def _caption(row: ScoreRow, role: str, boxes: Sequence[FaultRegion]) -> str:
    """A map's caption: its role, its label, its domain and the faults boxed on it."""
    truth = {0: "labelled normal", 1: "labelled anomalous", None: "unlabelled"}[row.label]
    bits = [role, truth] + ([f"{row.domain} domain"] if row.domain else [])
    if boxes:
        bits.append(
            "dashed box: injected fault (" + ", ".join(r.kind for r in boxes if r.kind) + ")"
        )
    return " · ".join(bits)


def _map_png(fig: Figure) -> bytes:
    """A map figure as PNG bytes, in the maps' style."""
    with matplotlib.rc_context(MAP_STYLE):
        return figure_png_bytes(fig, dpi=100)


def map_pictures(
    machine: str, key: str, rows: Sequence[ScoreRow], model_dir: str | None, results_dir: Path
) -> tuple[list[Picture], list[str]]:
    """Anomaly maps of the top clips by score plus a typical normal clip, on shared colour scales;
    each picture carries its clip's audio path. ``key`` is the machine's folder in the files."""
    chosen = _chosen(rows)
    if not any(r.path for r in rows):
        return [], [
            "scores.csv records no audio paths (scores read from submission files), so "
            "no anomaly maps."
        ]
    system, reason = _load_model(model_dir)
    if system is None:
        return [], [f"No anomaly maps: {reason}."]
    panels, notes = [], []
    for row, role in chosen:
        audio = _resolve_audio(row.path, results_dir)
        if audio is None:
            notes.append(f"{row.file}: audio file {row.path or '(none)'} not found, no map.")
            continue
        clip = Clip(
            path=audio,
            machine=machine,
            section=row.section.split("_")[-1],
            domain=row.domain,
            label=row.label,
        )
        if not system.has_anomaly_map:
            return [], [f"The system {system.name!r} produces no anomaly maps."]
        try:
            panels.append(
                (row, role, audio, map_panels(system.explain(clip, RunContext(progress=False))))
            )
        except StethoscopeError as err:
            notes.append(f"{row.file}: no map ({err}).")
    if not panels:
        return [], notes
    threshold = getattr(system, "threshold_", None)
    regions = [fault_regions_for(audio) for _, _, audio, _ in panels]
    figures = shared_scale_figures(
        [
            (decision_title(row.file, row.score, threshold), boxes, p)
            for (row, _, _, p), boxes in zip(panels, regions, strict=True)
        ]
    )
    pictures = []
    for i, ((row, role, audio, _), boxes, fig) in enumerate(
        zip(panels, regions, figures, strict=True)
    ):
        name = f"{key}/map{i + 1}_{slug(Path(row.file).stem)}.png"
        caption = _caption(row, role, boxes)
        png = _map_png(fig)
        pictures.append(Picture(name, f"anomaly map of {row.file}", caption, png, audio=audio))
    return pictures, notes


def shared_scale_figures(
    items: Sequence[tuple[str, Sequence[FaultRegion], MapPanels]],
) -> list[Figure]:
    """One anomaly figure per ``(title, fault regions, panels)``, all on the same two colour scales:
    the dB range of every input and reconstruction, and the largest 99.5th percentile of the
    maps."""
    vmax = max(float(np.percentile(p.amap, 99.5)) for *_, p in items)
    spec_range = spectrogram_range([p for *_, p in items])
    with matplotlib.rc_context(MAP_STYLE):
        return [
            anomaly_figure(p, title, boxes, map_vmax=vmax, width=6.2, spec_range=spec_range)
            for title, boxes, p in items
        ]
