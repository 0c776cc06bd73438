"""Pseudo-anomalies: every kind changes the clip, more with severity, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.data.pseudo_anomaly import KINDS, pseudo_anomalies, pseudo_anomaly

SR = 16_000


def _normal(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(2 * SR) / SR
    return (0.2 * np.sin(2 * np.pi * 120 * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def _log_spectrum(x: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::512] * np.hanning(1024)
    return 10 * np.log10(np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0) + 1e-10)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "time_stretch"])
def test_each_kind_changes_the_clip_more_at_higher_severity(kind: str) -> None:
    wave = _normal()
    changes = []
    for severity in (1, 2, 3):
        out = pseudo_anomaly(wave, kind, severity, np.random.default_rng(5))
        assert out.shape == wave.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert np.abs(out).max() <= 1.0
        changes.append(
            np.abs(_log_spectrum(out) - _log_spectrum(wave)).mean()
            + abs(np.log10(np.std(out) / np.std(wave)))
        )
    assert changes[0] > 0.01
    assert changes[0] < changes[2]


def test_a_time_stretch_moves_the_hum_by_its_factor() -> None:
    wave = _normal()
    for severity, factor in ((1, 0.02), (3, 0.10)):
        out = pseudo_anomaly(wave, "time_stretch", severity, np.random.default_rng(2))
        spectrum = np.abs(np.fft.rfft(out))
        peak = np.fft.rfftfreq(len(out), 1 / SR)[spectrum.argmax()]
        assert abs(peak / 120 - 1) == pytest.approx(factor, abs=0.005)


def test_a_tone_adds_a_narrow_peak_at_its_level() -> None:
    wave = _normal()
    out = pseudo_anomaly(wave, "tone", 3, np.random.default_rng(1))
    diff = out.astype(np.float64) - wave
    windows = np.mean(
        diff[: len(diff) // 4000 * 4000].reshape(-1, 4000) ** 2, axis=1
    )  # 0.25 s windows
    on = 10 * np.log10(windows.max() / np.mean(wave.astype(np.float64) ** 2))
    assert on == pytest.approx(
        -8, abs=1.0
    )  # severity 3: -8 dB re the clip, while it is switched on
    spectrum = np.abs(np.fft.rfft(diff))
    assert np.sort(spectrum)[-5:].sum() > 0.5 * spectrum.sum()  # one narrow peak


def test_generation_is_reproducible_and_covers_every_kind_and_severity() -> None:
    waves = [_normal(0), _normal(1)]
    a = list(pseudo_anomalies(waves, seed=3))
    b = list(pseudo_anomalies(waves, seed=3))
    assert len(a) == 2 * len(KINDS) * 3
    assert all(np.array_equal(x[3], y[3]) for x, y in zip(a, b, strict=True))
    assert {(i, k, s) for i, k, s, _ in a} == {
        (i, k, s) for i in (0, 1) for k in KINDS for s in (1, 2, 3)
    }
    with pytest.raises(ValueError, match="unknown pseudo-anomaly kind"):
        pseudo_anomaly(waves[0], "gremlins", 1, np.random.default_rng(0))
