"""Anomaly-map pictures: input log-mel, reconstruction and squared difference of one clip.

Axes are physical: time in seconds (frame ``i`` is centred at ``i * hop / sample_rate``, as
the centred STFT puts it) and frequency in Hz on a mel-scaled axis (bin edges from the
Slaney mel scale that `stethoscope.features.logmel` uses), so a fault at 3 kHz sits at the
3 kHz tick whatever the number of mel bins. Where the toy factory's ``fault_regions.csv``
lies beside the clip, the injected fault is outlined, to check localisation by eye.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from ..data.clip import Clip
from ..errors import ConfigError
from ..features.logmel import LogMelParams, _hz_to_mel, _mel_to_hz
from ..fsutil import atomic_write_bytes
from ..systems.base import Explanation
from .numbers import plain_formatter, readable

SPEC_CMAP, MAP_CMAP = "magma", "inferno"
HZ_TICKS = (0, 250, 500, 1000, 2000, 4000, 8000)


@dataclass(frozen=True)
class FaultRegion:
    """A known fault's box in seconds and Hz (the toy factory writes these)."""

    t0: float
    t1: float
    f0: float
    f1: float
    kind: str = ""


@dataclass
class MapPanels:
    """What one anomaly-map figure shows; ``reconstruction`` is None where the system has none."""

    logmel: np.ndarray
    reconstruction: np.ndarray | None
    amap: np.ndarray
    sample_rate: int = 16_000
    hop_length: int = 512
    map_title: str = "squared difference, input vs reconstruction"
    map_unit: str = "squared error (dB²)"


def mel_band_edges(n_mels: int = 128, sample_rate: int = 16_000) -> np.ndarray:
    """(n_mels + 1) band edges in Hz: midpoints between mel-bin centres (in mel), clipped to [0,
    sr/2]."""
    points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2)
    centres = points[1:-1]
    step = points[1] - points[0]
    edges = np.concatenate(
        [[centres[0] - step / 2], (centres[:-1] + centres[1:]) / 2, [centres[-1] + step / 2]]
    )
    return np.clip(_mel_to_hz(edges), 0.0, sample_rate / 2)


def mel_centre_frequencies(n_mels: int = 128, sample_rate: int = 16_000) -> np.ndarray:
    """Centre frequency in Hz of each mel bin (the peaks of the Slaney filters)."""
    points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2)
    return _mel_to_hz(points[1:-1])


def frame_edges(n_frames: int, hop_length: int = 512, sample_rate: int = 16_000) -> np.ndarray:
    """(n_frames + 1) time edges in seconds around frame centres ``i * hop / sr``."""
    return (np.arange(n_frames + 1) - 0.5) * hop_length / sample_rate


def _mesh(ax: Axes, image: np.ndarray, sample_rate: int, hop_length: int, **kwargs):
    n_mels, n_frames = image.shape
    x = frame_edges(n_frames, hop_length, sample_rate)
    y = mel_band_edges(n_mels, sample_rate)
    mesh = ax.pcolormesh(x, y, image, shading="flat", rasterized=True, **kwargs)
    ax.set_yscale("function", functions=(_hz_to_mel, _mel_to_hz))
    ax.yaxis.set_major_locator(FixedLocator([f for f in HZ_TICKS if f <= sample_rate / 2]))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(
        FuncFormatter(lambda f, _: f"{f / 1000:g}k" if f >= 1000 else f"{f:g}")
    )
    ax.set_ylim(0, sample_rate / 2)
    ax.set_xlim(0, n_frames * hop_length / sample_rate)
    ax.set_ylabel("frequency (Hz)")
    return mesh


def plot_logmel(
    ax: Axes,
    logmel: np.ndarray,
    sample_rate: int = 16_000,
    hop_length: int = 512,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
):
    """Draw a log-mel spectrogram (dB) on ``ax``; returns the mesh."""
    mesh = _mesh(ax, logmel, sample_rate, hop_length, cmap=SPEC_CMAP, vmin=vmin, vmax=vmax)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04).set_label("dB")
    return mesh


def plot_anomaly_map(
    ax: Axes,
    amap: np.ndarray,
    sample_rate: int = 16_000,
    hop_length: int = 512,
    vmax: float | None = None,
    colorbar: bool = True,
    regions: Sequence[FaultRegion] = (),
    unit: str = "squared error (dB²)",
):
    """Draw an anomaly map (n_mels, frames) on ``ax``: brighter = worse reconstructed.

    ``vmax`` defaults to the map's 99.5th percentile so that one hot cell does not wash the
    rest out; pass a shared value to compare clips on one scale. Returns the mesh.
    """
    amap = np.asarray(amap, dtype=float)
    vmax = float(np.percentile(amap, 99.5)) if vmax is None else vmax
    mesh = _mesh(ax, amap, sample_rate, hop_length, cmap=MAP_CMAP, vmin=0.0, vmax=max(vmax, 1e-12))
    if colorbar:
        bar = ax.figure.colorbar(mesh, ax=ax, pad=0.01, fraction=0.04, extend="max")
        bar.set_label(unit)
        bar.ax.yaxis.set_major_formatter(plain_formatter())
    draw_regions(ax, regions)
    return mesh


def draw_regions(ax: Axes, regions: Sequence[FaultRegion]) -> None:
    """Outline known fault regions (dashed cyan boxes, visible on magma and inferno)."""
    for r in regions:
        ax.add_patch(
            Rectangle(
                (r.t0, max(r.f0, 1.0)),
                r.t1 - r.t0,
                r.f1 - max(r.f0, 1.0),
                fill=False,
                edgecolor="#22d3ee",
                linewidth=1.4,
                linestyle=(0, (4, 2)),
            )
        )


def fault_regions_for(path: str | Path) -> list[FaultRegion]:
    """The toy factory's ground-truth fault boxes of ``path`` (``<machine>/fault_regions.csv``
    lists ``<split>/<file>``); empty when there is no such file or row."""
    path = Path(path)
    table = path.parent.parent / "fault_regions.csv"
    if not table.exists():
        return []
    key = f"{path.parent.name}/{path.name}"
    try:
        rows = list(csv.DictReader(io.StringIO(table.read_text())))
        return [
            FaultRegion(
                float(r["t0"]), float(r["t1"]), float(r["f0"]), float(r["f1"]), r.get("kind") or ""
            )
            for r in rows
            if r.get("file") == key
        ]
    except (KeyError, ValueError, OSError):
        return []  # a malformed ground-truth file only costs the outline


def map_panels(explanation: Explanation, params: LogMelParams = LogMelParams()) -> MapPanels:
    """The panels of one `System.explain` result: input, reconstruction (where the system
    has one) and anomaly map, all from the same pass."""
    if explanation.anomaly_map is None:
        raise ConfigError("this system produces no anomaly map")
    rec = explanation.reconstruction
    return MapPanels(
        np.asarray(explanation.logmel, dtype=np.float32),
        None if rec is None else np.asarray(rec, dtype=np.float32),
        np.asarray(explanation.anomaly_map, dtype=np.float32),
        params.sample_rate,
        params.hop_length,
        explanation.map_title,
        explanation.map_unit,
    )


def spectrogram_range(panels: Sequence[MapPanels]) -> tuple[float, float]:
    """The dB range (1st to 99.9th percentile) of the inputs and reconstructions of ``panels``,
    so that several figures can share one spectrogram colour scale."""
    spec = np.concatenate(
        [a.ravel() for p in panels for a in (p.logmel, p.reconstruction) if a is not None]
    )
    lo, hi = np.percentile(spec, [1, 99.9])
    return float(lo), float(hi)


def anomaly_figure(
    panels: MapPanels,
    title: str = "",
    regions: Sequence[FaultRegion] = (),
    map_vmax: float | None = None,
    width: float = 10.0,
    spec_range: tuple[float, float] | None = None,
) -> Figure:
    """The stacked panels (input, [reconstruction,] difference) sharing time and frequency axes.

    ``spec_range`` (dB) and ``map_vmax`` fix the colour scales, to compare figures; by default
    each figure scales to its own values.
    """
    rows = [("input log-mel", panels.logmel)]
    if panels.reconstruction is not None:
        rows.append(("reconstruction", panels.reconstruction))
    fig = new_figure((width, 2.3 * (len(rows) + 1) + 0.6))
    axes = fig.subplots(len(rows) + 1, 1, sharex=True, sharey=True)
    vmin, vmax = spec_range or spectrogram_range([panels])
    sr, hop = panels.sample_rate, panels.hop_length
    for ax, (label, image) in zip(axes, rows, strict=False):
        plot_logmel(ax, image, sr, hop, vmin=vmin, vmax=vmax)
        draw_regions(ax, regions)
        ax.set_title(label, loc="left", fontsize=10)
    plot_anomaly_map(
        axes[-1], panels.amap, sr, hop, vmax=map_vmax, regions=regions, unit=panels.map_unit
    )
    axes[-1].set_title(f"anomaly map: {panels.map_title}", loc="left", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10, x=0.01, ha="left", linespacing=1.4)
    return fig


def decision_title(name: str, score: float | None, threshold: float | None) -> str:
    """Two lines: the file name, then ``score 1.23 · threshold 1 · ANOMALY`` (unknown parts left
    out),
    numbers in plain notation."""
    parts = []
    known = threshold if threshold is not None and np.isfinite(threshold) else None
    if score is not None:
        digits = 4  # more where 4 would print a score just above the threshold as equal to it
        while (
            known is not None
            and score != known
            and digits < 12
            and readable(score, digits) == readable(known, digits)
        ):
            digits += 1
        parts.append(f"score {readable(score, digits)}")
        if known is not None:
            parts += [
                f"threshold {readable(known, digits)}",
                "ANOMALY" if score > known else "normal",
            ]
    return "\n".join([name, "  ·  ".join(parts)]) if parts else name


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas, outside pyplot: no display, no global state to close."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


def save_anomaly_map_png(
    explanation: Explanation,
    clip: Clip,
    out_png: str | Path,
    threshold: float | None = None,
    regions: Sequence[FaultRegion] | Literal["auto"] = "auto",
) -> Path:
    """Write the anomaly-map figure of one `System.explain` result to ``out_png``.

    The title names the file, its score, the decision threshold and the decision.
    ``regions="auto"`` outlines the toy factory's known fault when its ``fault_regions.csv``
    lies beside the clip's folder.
    """
    panels = map_panels(explanation)
    boxes = fault_regions_for(clip.path) if regions == "auto" else list(regions)
    title = decision_title(Path(clip.path).name, explanation.score, threshold)
    return atomic_write_bytes(Path(out_png), figure_png_bytes(anomaly_figure(panels, title, boxes)))
