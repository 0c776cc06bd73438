"""`DetectorModule`, the torch form of a fitted detector that scoring modules (mel_stats,
embedding_knn and TLDiffGAN exports) run: its scores equal the detector's own ``score``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stethoscope.detectors import DETECTORS, get_detector
from stethoscope.detectors.module import DetectorModule
from stethoscope.errors import ConfigError


@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("standardize", [True, False])
def test_torch_scores_equal_the_detectors(name: str, standardize: bool) -> None:
    rng = np.random.default_rng(3)
    train = rng.standard_normal((40, 5)) * [1, 2, 3, 1, 4] + 7
    rows = np.concatenate([rng.standard_normal((12, 5)) * [1, 2, 3, 1, 4] + 7, train[:3] + 6.0])
    det = get_detector(name, standardize=standardize).fit(train)
    with torch.no_grad():
        got = DetectorModule(det)(torch.from_numpy(rows)).numpy()
    assert got.dtype == np.float64
    expected = det.score(rows)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


def test_full_covariance_gmm_has_no_torch_form() -> None:
    rows = np.random.default_rng(0).standard_normal((30, 3))
    det = get_detector("gmm", covariance_type="full").fit(rows)
    with pytest.raises(ConfigError, match="covariance_type 'full' cannot be exported"):
        DetectorModule(det)
