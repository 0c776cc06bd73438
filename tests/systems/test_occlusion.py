"""Occlusion maps: the region whose deletion lowers the score is the one marked."""

from __future__ import annotations

import numpy as np
import torch

from stethoscope.features.logmel import LogMel, LogMelParams, mel_filterbank
from stethoscope.systems.occlusion import occlusion_map

SR = 16_000


def _band_energy(waves) -> np.ndarray:
    """A scorer that hears only 2.3-2.7 kHz: its mean power there."""
    out = []
    for wave in waves:
        spectrum = np.abs(np.fft.rfft(wave)) ** 2
        freqs = np.fft.rfftfreq(len(wave), 1 / SR)
        out.append(spectrum[(freqs >= 2300) & (freqs <= 2700)].mean())
    return np.asarray(out)


def test_the_deleted_region_that_lowers_the_score_is_marked() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(10 * SR) / SR
    wave = 0.01 * rng.standard_normal(len(t))
    whine = (t >= 4.0) & (t < 6.0)
    wave[whine] += 0.5 * np.sin(2 * np.pi * 2500 * t[whine])  # a 2.5 kHz whine from 4 to 6 s
    wave = wave.astype(np.float32)
    params = LogMelParams()
    score, amap = occlusion_map(wave, _band_energy, params)
    assert score == _band_energy([wave])[0]
    assert (
        amap.shape == LogMel(params)(torch.from_numpy(wave[None])).shape[1:] and (amap >= 0).all()
    )

    hot = amap == amap.max()
    frames = np.flatnonzero(hot.any(axis=0)) * params.hop_length / SR
    assert frames.min() >= 3.0 and frames.max() <= 7.0  # the 1 s chunks holding the whine
    filters = mel_filterbank(SR, params.n_fft, params.n_mels)
    hz = np.linspace(0, SR / 2, params.n_fft // 2 + 1)
    bins = np.flatnonzero(hot.any(axis=1))
    low, high = hz[filters[bins.min()] > 0].min(), hz[filters[bins.max()] > 0].max()
    assert low <= 2500 <= high and high - low < 1500  # the mel band holding 2.5 kHz (one of 8)
    assert (
        amap[:, : int(2.0 * SR / params.hop_length)].max() < 0.01 * amap.max()
    )  # 0-2 s: nothing there
