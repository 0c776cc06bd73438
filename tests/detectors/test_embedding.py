"""Embedding detectors: outliers rank above inliers, tiny sets, reload gives identical scores."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.detectors import DETECTORS, get_detector, list_detectors
from stethoscope.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((80, 6)) * [1, 2, 3, 1, 1, 5] + 10
    inliers = rng.standard_normal((30, 6)) * [1, 2, 3, 1, 1, 5] + 10
    outliers = inliers[:10] + rng.choice([-1, 1], size=(10, 6)) * 8 * np.array([1, 2, 3, 1, 1, 5])
    return train, inliers, outliers


@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("standardize", [True, False])
def test_outliers_rank_above_inliers(data, name, standardize):
    train, inliers, outliers = data
    det = get_detector(name, standardize=standardize).fit(train)
    s_in, s_out = det.score(inliers), det.score(outliers)
    assert s_in.shape == (30,) and np.isfinite(s_in).all()
    assert s_out.min() > np.median(s_in)
    assert np.mean(s_out[:, None] > s_in[None, :]) > 0.95  # AUC
    assert det.train_scores().shape == (80,)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_reload_gives_identical_scores(data, name):
    train, inliers, outliers = data
    det = get_detector(name).fit(train)
    state = det.state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    again = DETECTORS[name].from_state({k: v.copy() for k, v in state.items()}, **det.get_params())
    test = np.vstack([inliers, outliers])
    np.testing.assert_array_equal(again.score(test), det.score(test))
    np.testing.assert_array_equal(again.train_scores(), det.train_scores())


def test_reload_rejects_inconsistent_scaler(data):
    det = get_detector("knn").fit(data[0])
    state = det.state()
    state["scaler_mean"] = state["scaler_mean"] + 1
    with pytest.raises(CheckpointError, match="scaler"):
        DETECTORS["knn"].from_state(state, **det.get_params())


def test_knn_methods_and_clamping():
    train = np.array([[0.0], [1.0], [3.0]])
    largest = get_detector("knn", n_neighbors=2, method="largest", standardize=False).fit(train)
    mean = get_detector("knn", n_neighbors=2, method="mean", standardize=False).fit(train)
    np.testing.assert_allclose(largest.score(np.array([[10.0]])), [9.0])
    np.testing.assert_allclose(mean.score(np.array([[10.0]])), [8.0])
    np.testing.assert_allclose(largest.train_scores(), [3.0, 2.0, 3.0])  # self excluded
    tiny = get_detector("knn", n_neighbors=5, standardize=False).fit(train[:2])
    assert tiny.k_ == 1 and tiny.score(np.array([[5.0]]))[0] == pytest.approx(4.0)
    assert get_detector("lof", n_neighbors=20).fit(train).k_ == 2


def test_sos_training_scores_equal_pyod(data):
    from pyod.models.sos import SOS as PyodSOS

    train = data[0][:20]
    ours = get_detector("sos", standardize=False).fit(train).train_scores()
    np.testing.assert_allclose(ours, PyodSOS(perplexity=4.5).fit(train).decision_scores_, atol=1e-9)


def test_registry_and_errors(data):
    names = {r["name"] for r in list_detectors()}
    assert names == {"knn", "lof", "gmm", "sos", "mahalanobis"}
    with pytest.raises(ConfigError):
        get_detector("isolation_forest")
    with pytest.raises(ConfigError, match="no parameter"):
        get_detector("gmm", n_neighbors=3)
    det = get_detector("knn").fit(data[0])
    with pytest.raises(ValueError, match="columns"):
        det.score(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        det.score(np.full((1, 6), np.nan))
