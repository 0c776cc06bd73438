"""The anomaly-map gallery: what the report says is shared (colour scales) is shared."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.reports.map_gallery import shared_scale_figures
from stethoscope.reports.maps import MapPanels


def _panels(seed: int, db_low: float, db_high: float, err_high: float) -> MapPanels:
    rng = np.random.default_rng(seed)
    shape = (32, 40)
    logmel = rng.uniform(db_low, db_high, shape).astype(np.float32)
    return MapPanels(logmel, logmel * 0.9, rng.uniform(0, err_high, shape).astype(np.float32))


def _clims(fig) -> dict[str, tuple[float, float]]:
    """Colour limits of each titled panel (input, reconstruction, anomaly map) of a figure."""
    return {
        ax.get_title(loc="left").split(":")[0]: ax.collections[0].get_clim()
        for ax in fig.axes
        if ax.get_title(loc="left")
    }


def test_every_figure_of_a_gallery_shares_both_colour_scales():
    quiet, loud = _panels(0, -60, 0, 1.0), _panels(1, -10, 30, 100.0)
    figures = shared_scale_figures([("quiet.wav", (), quiet), ("loud.wav", (), loud)])
    clims = [_clims(f) for f in figures]
    assert set(clims[0]) == {"input log-mel", "reconstruction", "anomaly map"}
    spec = np.concatenate([a.ravel() for p in (quiet, loud) for a in (p.logmel, p.reconstruction)])
    expected_spec = tuple(np.percentile(spec, [1, 99.9]))
    expected_map = (0.0, max(np.percentile(quiet.amap, 99.5), np.percentile(loud.amap, 99.5)))
    for c in clims:
        assert c["input log-mel"] == pytest.approx(expected_spec, rel=1e-6, abs=1e-9)
        assert c["reconstruction"] == pytest.approx(expected_spec, rel=1e-6, abs=1e-9)
        assert c["anomaly map"] == pytest.approx(expected_map, rel=1e-6, abs=1e-9)
