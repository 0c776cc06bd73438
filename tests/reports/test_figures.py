"""Report charts and names: the histogram's legend clear of the threshold line, plain tick labels,
distinct anchors and folders for machine types whose names reduce to the same slug."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.reports.figures import histogram_figure, unique_slugs
from stethoscope.reports.numbers import readable
from stethoscope.reports.results import ScoreRow


def _rows(scores, labels) -> list[ScoreRow]:
    return [
        ScoreRow(f"c{i}.wav", "", "fan", "section_00", None, lab, float(s), None)
        for i, (s, lab) in enumerate(zip(scores, labels, strict=True))
    ]


@pytest.mark.parametrize(
    "scores, threshold",
    [
        (
            np.linspace(12_000, 13_000, 20),
            12_100.0,
        ),  # threshold at the left, where the legend used to sit
        (np.geomspace(0.001, 10, 20), 0.002),  # log axis
        (np.linspace(180.2, 180.5, 20), 180.21),
    ],
)
def test_histogram_legend_is_clear_of_the_threshold_line(scores, threshold):
    fig = histogram_figure("fan", _rows(scores, [0, 1] * 10), threshold)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    (legend,) = fig.legends
    box, axes_box = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert [ln.get_label() for ln in ax.lines] == [f"decision threshold {readable(threshold)}"]
    x = ax.transData.transform((threshold, 1))[0]
    assert axes_box.x0 <= x <= axes_box.x1  # the line is drawn inside the axes ...
    assert box.y1 <= axes_box.y0  # ... and the legend lies wholly below them
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and not any("e" in t or "×" in t or "$" in t for t in labels), labels
    assert len(set(labels)) == len(labels) and ax.xaxis.get_offset_text().get_text() == ""


def test_unique_slugs_never_merge_two_machines():
    keys = unique_slugs(["a b", "a_b", "A_B", "a_b-2", "fan"])
    assert keys["a b"] == "a_b" and keys["fan"] == "fan"
    assert (
        len({k.lower() for k in keys.values()}) == 5
    )  # distinct even on a case-insensitive file system
    assert keys["a_b-2"] == "a_b-2"  # a name's own slug is never given to another
    assert all(k.lower().startswith("a_b") for n, k in keys.items() if n != "fan")
