import copy
import os

import numpy as np
import pytest
import scipy.stats
import torch
from safetensors.torch import load_file

from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.features.extract import FrameBank, logmels
from stethoscope.models.ae import DcaseAE
from stethoscope.systems import get_system, load_system
from stethoscope.systems.threshold import gamma_threshold
from tests.conftest import write_wav


def test_architecture_matches_official_baseline():
    model = DcaseAE()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (640, 128),
        (128, 128),
        (128, 128),
        (128, 128),
        (128, 8),
        (8, 128),
        (128, 128),
        (128, 128),
        (128, 128),
        (128, 640),
    ]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 9  # every hidden layer, the 8-unit bottleneck included, not the output
    assert norms[4].num_features == 8


def test_gamma_threshold_is_90th_percentile_of_fitted_gamma():
    scores = scipy.stats.gamma.rvs(2.0, loc=1.0, scale=0.5, size=500, random_state=0)
    a, loc, scale = scipy.stats.gamma.fit(scores)
    assert gamma_threshold(scores) == pytest.approx(
        scipy.stats.gamma.ppf(0.9, a, loc=loc, scale=scale)
    )
    assert 0.85 < np.mean(scores <= gamma_threshold(scores)) < 0.95


def _tone_clips(tmp_path, n, anomaly=False, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(32000) / 16000
    clips = []
    for i in range(n):
        f0 = 300 * (1 + 0.01 * rng.standard_normal())
        wave = (
            0.3 * np.sin(2 * np.pi * f0 * t)
            + 0.2 * np.sin(2 * np.pi * 2 * f0 * t)
            + 0.02 * rng.standard_normal(len(t))
        )
        if anomaly:
            wave += 0.3 * np.sin(2 * np.pi * 2300 * t) * (t > 1.0)
        path = write_wav(
            tmp_path / f"{'a' if anomaly else 'n'}{seed}_{i}.wav", wave.astype(np.float32)
        )
        clips.append(
            Clip(
                path=path,
                machine="tone",
                domain="target" if i % 4 == 3 else "source",
                label=int(anomaly),
            )
        )
    return clips


CTX = RunContext(progress=False)


def _mode(system, mode: str):
    """A copy of a fitted system scoring in ``mode`` (the shared fixture is never changed)."""
    other = copy.deepcopy(system)
    other.score_mode = mode
    return other


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ae")
    train = _tone_clips(tmp, 8)
    system = get_system("dcase_ae", epochs=20, batch_size=32)
    system.fit(train, ctx=CTX.replace(cache_dir=tmp / "cache"))
    test = _tone_clips(tmp, 4, seed=1) + _tone_clips(tmp, 4, anomaly=True, seed=2)
    return system, train, test, tmp


def test_training_lowers_loss_and_ranks_anomalies(trained):
    system, _, test, _ = trained
    assert system.history_[-1] < 0.5 * system.history_[0]
    y = np.array([c.label for c in test])
    for mode in ("mse", "mahala"):
        s = _mode(system, mode).score(test, CTX)
        assert s[y == 1].min() > s[y == 0].max(), mode
    assert system.threshold_ is not None and np.isfinite(system.threshold_)


def test_mahala_equals_official_matrix_formula(trained):
    system, _, test, _ = trained
    ours = _mode(system, "mahala").score(test[:3], CTX)
    bank = FrameBank(logmels(test[:3], system.logmel_params, progress=False), 5)
    for i in range(3):
        x = bank.vectors(torch.nonzero(bank.clip_index == i).flatten())
        with torch.no_grad():
            recon = system.model.reconstruct(x)
        d = (recon - x).double()
        official = [
            float(
                (d @ p @ d.T).mean(dim=1).sum() / len(d)
            )  # mean(D P D^T), as the baseline reduces it
            for p in (system.precision_source_, system.precision_target_)
        ]
        assert ours[i] == pytest.approx(min(official), rel=1e-6, abs=1e-9)


def test_save_load_round_trip_gives_identical_scores(trained):
    system, _, test, tmp = trained
    system.save(tmp / "model")
    again = load_system(tmp / "model")
    np.testing.assert_allclose(
        again.score(test, CTX), system.score(test, CTX), rtol=1e-6, atol=1e-9
    )
    assert again.threshold_ == system.threshold_
    assert again.get_params() == system.get_params()
    umask = os.umask(0)
    os.umask(umask)
    for name in (
        "weights.safetensors",
        "config.json",
    ):  # shareable: plain-file modes, not mkstemp's 0600
        assert (tmp / "model" / name).stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp / "model").stat().st_mode & 0o777 == 0o777 & ~umask
    saved, now = load_file(str(tmp / "model" / "weights.safetensors")), again.state_tensors()
    assert set(saved) == set(now)
    for key, tensor in saved.items():  # stored tensors round-trip bit-exactly
        assert torch.equal(tensor, now[key].to(tensor.dtype)), key


def test_explain_is_one_pass_with_the_scores_of_score(trained):
    system, _, test, _ = trained
    for mode in ("mse", "mahala"):
        other = _mode(system, mode)
        assert other.explain(test[-1], CTX).score == pytest.approx(
            float(other.score(test[-1:], CTX)[0]), rel=1e-6, abs=1e-9
        )


def test_reconstruction_is_the_overlap_average_in_db(trained):
    system, _, test, _ = trained
    ex = system.explain(test[0], CTX)
    mel, rec = ex.logmel, ex.reconstruction
    assert mel.shape == rec.shape == (128, 63)
    expected = logmels(test[:1], system.logmel_params, progress=False)[0]
    np.testing.assert_allclose(mel, expected, rtol=1e-6, atol=1e-6)
    # the anomaly map is the squared error of the same overlap-averaged vectors: large where rec
    # is far
    assert np.corrcoef(((rec - mel) ** 2).ravel(), ex.anomaly_map.ravel())[0, 1] > 0.5


def test_anomaly_map_shape_and_location(trained):
    system, _, test, _ = trained
    amap = system.anomaly_map(test[-1], CTX)
    assert amap.shape == (128, 63)
    # the injected 2.3 kHz tone after 1 s dominates the map's later frames
    assert amap[:, 40:].mean() > amap[:, :25].mean()


def test_same_seed_same_scores_other_seed_other_model(tmp_path):
    train = _tone_clips(tmp_path, 4)
    fits = [
        get_system("dcase_ae", epochs=3, batch_size=32).fit(train, ctx=CTX.replace(seed=s))
        for s in (5, 5, 6)
    ]
    scores = [f.score(train, CTX) for f in fits]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-6, atol=1e-9)
    assert not np.allclose(scores[0], scores[2], rtol=1e-6)


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("epochs", "abc", "an integer"),
        ("epochs", 0, "[1, inf)"),
        ("batch_size", 0, "[2, inf)"),
        ("learning_rate", float("nan"), "(0, inf)"),
        ("score_mode", "l1", "['mse', 'mahala']"),
    ],
)
def test_bad_hyperparameters_are_refused_on_construction(key, value, allowed):
    with pytest.raises(ConfigError) as err:
        get_system("dcase_ae", **{key: value})
    assert key in str(err.value) and allowed in str(err.value)


@pytest.mark.parametrize("key", ["device", "seed", "progress", "cache_dir"])
def test_runtime_settings_are_not_hyperparameters(key):
    with pytest.raises(ConfigError, match=f"{key} is a runtime setting"):
        get_system("dcase_ae", **{key: "cpu"})
