"""The mel_stats system: features against numpy, detection, groups per section and domain,
the anomaly map, the threshold and save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.models.mel_stats import MelStatsFeatures
from stethoscope.systems import get_system, load_system

SR = 16_000
CTX = RunContext(progress=False)


def _wave(
    rng: np.random.Generator, anomalous: bool = False, seconds: float = 2.0, hum: float = 120.0
) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    wave = 0.2 * np.sin(2 * np.pi * (hum + rng.normal(0, 2)) * t) + 0.05 * rng.standard_normal(
        len(t)
    )
    if anomalous:  # a 2.5 kHz whine in the second half
        wave += 0.3 * np.sin(2 * np.pi * 2500 * t) * (t > seconds / 2)
    return wave.astype(np.float32)


def _clips(
    root: Path,
    n: int,
    anomalous: bool,
    seed: int,
    section: str = "00",
    domain: str | None = None,
    hum: float = 120.0,
) -> list[Clip]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        path = root / f"s{section}_{domain}_{int(anomalous)}_{seed}_{i:02d}.wav"
        sf.write(path, _wave(rng, anomalous, hum=hum), SR)
        out.append(
            Clip(
                path=path,
                machine="fan",
                section=section,
                domain=domain,
                split="test",
                label=int(anomalous),
            )
        )
    return out


def test_features_equal_numpy_statistics() -> None:
    rng = np.random.default_rng(0)
    mel = rng.normal(size=(2, 16, 50))
    feats = MelStatsFeatures(16, ["mean", "std", "p10", "p90", "max", "min", "p50"])(
        torch.from_numpy(mel)
    ).numpy()
    expected = np.concatenate(
        [
            mel.mean(-1),
            mel.std(-1),
            np.percentile(mel, 10, axis=-1),
            np.percentile(mel, 90, axis=-1),
            mel.max(-1),
            mel.min(-1),
            np.percentile(mel, 50, axis=-1),
        ],
        axis=1,
    )
    np.testing.assert_allclose(feats, expected, rtol=1e-12, atol=1e-12)


def test_modulation_features_find_the_envelope_rate() -> None:
    """A band whose level swings at 4 Hz has its largest modulation power in the bin holding
    4 Hz."""
    frames = 313
    t = np.arange(frames) / (16_000 / 512)
    mel = np.zeros((1, 16, frames))
    mel[0, :8] = 10 * np.sin(2 * np.pi * 4.0 * t)
    module = MelStatsFeatures(16, ["mean"], modulation_bands=2, modulation_bins=8)
    feats = module(torch.from_numpy(mel)).numpy()[0, 16:].reshape(2, 8)
    edges = np.logspace(np.log10(0.25), np.log10(16_000 / 1024), 9)
    assert feats[0].argmax() == np.searchsorted(edges, 4.0) - 1
    assert feats[0].max() > feats[1].max() + 3  # the flat band has no modulation (log10 power)
    assert module.dim == 16 + 16


def test_default_scores_are_shrinkage_mahalanobis_of_standardised_features(tmp_path: Path) -> None:
    train = _clips(tmp_path, 10, False, 1)
    test = _clips(tmp_path, 4, False, 2) + _clips(tmp_path, 4, True, 3)
    system = get_system("mel_stats").fit(train, ctx=CTX)
    scores = system.score(test, CTX)
    assert roc_auc_score([c.label for c in test], scores) == 1.0
    # the same figure from sklearn directly
    X = system.features([m for m in _mels(train)])
    scaler = StandardScaler().fit(X)
    lw = LedoitWolf().fit(scaler.transform(X))
    expected = lw.mahalanobis(scaler.transform(system.features(_mels(test))))
    np.testing.assert_allclose(scores, expected, rtol=1e-8, atol=1e-8)
    assert X.shape[1] == 5 * 128
    assert system.threshold_ is not None and system.run_["threshold"]["fit"] == "crossfit"


def _mels(clips: list[Clip]) -> list[np.ndarray]:
    from stethoscope.features.extract import FeatureRequest, iter_decoded
    from stethoscope.features.logmel import LogMelParams

    return [
        m
        for d in iter_decoded(clips, FeatureRequest(logmel=LogMelParams()), progress=False)
        for m in d.logmels
    ]


def test_groups_per_section_and_domain_and_the_min_rule(tmp_path: Path) -> None:
    """Two sections with two domains each: four detectors; a clip is scored by its section's
    detectors only, with the smaller score; a section never seen uses every detector."""
    train = (
        _clips(tmp_path, 4, False, 1, "00", "source", 120)
        + _clips(tmp_path, 4, False, 2, "00", "target", 300)
        + _clips(tmp_path, 4, False, 3, "01", "source", 500)
        + _clips(tmp_path, 4, False, 4, "01", "target", 700)
    )
    system = get_system("mel_stats", min_group_clips=4, threshold_fit="in_sample").fit(
        train, ctx=CTX
    )
    assert [(g["section"], g["domain"]) for g in system.groups_] == [
        ("00", "source"),
        ("00", "target"),
        ("01", "source"),
        ("01", "target"),
    ]
    probe = _clips(tmp_path, 1, False, 5, "00", None, 300)[0]
    feats = torch.from_numpy(system.features(_mels([probe])))
    every = system.scorer_.group_scores(feats).numpy()[0]
    assert system.score([probe], CTX)[0] == pytest.approx(every[:2].min(), rel=1e-9, abs=1e-9)
    unseen = Clip(path=probe.path, machine="fan", section="07")
    assert system.score([unseen], CTX)[0] == pytest.approx(every.min(), rel=1e-9, abs=1e-9)
    assert system.score_waveforms([sf.read(probe.path, dtype="float32")[0]], SR, CTX)[
        0
    ] == pytest.approx(every.min(), rel=1e-6, abs=1e-9)
    # min_group_clips 8: sections of 8 clips keep their detector, domains of 4 do not
    by_section = get_system("mel_stats", threshold_fit="in_sample").fit(train, ctx=CTX)
    assert [(g["section"], g["domain"]) for g in by_section.groups_] == [("00", None), ("01", None)]
    pooled = get_system("mel_stats", min_group_clips=9, threshold_fit="in_sample").fit(
        train, ctx=CTX
    )
    assert [(g["section"], g["domain"]) for g in pooled.groups_] == [(None, None)]


def test_the_map_points_at_the_whine_and_sums_to_the_squared_deviations(tmp_path: Path) -> None:
    train = _clips(tmp_path, 10, False, 1)
    system = get_system("mel_stats", threshold_fit="in_sample").fit(train, ctx=CTX)
    clip = _clips(tmp_path, 1, True, 9)[0]
    ex = system.explain(clip, CTX)
    assert ex.anomaly_map.shape == ex.logmel.shape and np.isfinite(ex.anomaly_map).all()
    by_bin = ex.anomaly_map.sum(axis=1)
    from stethoscope.features.logmel import _hz_to_mel

    whine_bin = round(_hz_to_mel(2500.0) / _hz_to_mel(8000.0) * 129) - 1
    assert abs(int(by_bin.argmax()) - whine_bin) <= 3
    frames = ex.anomaly_map.sum(axis=0)
    half = len(frames) // 2
    assert (
        frames[half + 2 :].sum() > 3 * frames[: half - 2].sum()
    )  # the whine is in the second half
    feats = system.features([ex.logmel])[0]
    det = system.detectors_[0]
    z2 = ((feats - det.scaler_.mean_) / det.scaler_.scale_) ** 2
    assert ex.anomaly_map.sum() == pytest.approx(z2.sum(), rel=1e-4, abs=1e-9)
    assert ex.score == pytest.approx(system.score([clip], CTX)[0], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("detector", ["mahalanobis", "knn", "gmm"])
def test_save_load_round_trip(tmp_path: Path, detector: str) -> None:
    train = _clips(tmp_path, 8, False, 1)
    test = _clips(tmp_path, 3, True, 2)
    system = get_system("mel_stats", detector=detector, modulation_bands=4).fit(train, ctx=CTX)
    system.save(tmp_path / "model")
    loaded = load_system(tmp_path / "model")
    np.testing.assert_allclose(
        loaded.score(test, CTX), system.score(test, CTX), rtol=1e-9, atol=1e-9
    )
    assert loaded.threshold_ == system.threshold_


def test_bad_hyperparameters_are_refused_before_any_audio() -> None:
    with pytest.raises(ConfigError, match="stats"):
        get_system("mel_stats", stats=["mean", "loudness"])
    with pytest.raises(ConfigError, match="detector"):
        get_system("mel_stats", detector="lof")
