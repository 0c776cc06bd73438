"""Pseudo-anomalies: labelled abnormal clips synthesised from a user's own normal clips.

With only normal recordings there is nothing to choose a detector on. Each function here
alters a normal waveform the way a worn or broken machine might sound, at three severities:
an added tone or a harmonic series, clicks, impacts ringing a resonance, amplitude or
frequency modulation, a spectral tilt, band-limited noise, a speed change (time stretch)
and a level shift. Added components are set relative to the clip's own RMS (severity 1, 2,
3: -20, -14, -8 dB for tones and noise), so that a quiet machine gets a quiet fault; the
building blocks are the toy factory's (`data.toy_sounds`).

Whether detection of these predicts detection of real faults is an empirical question,
measured in docs/RESULTS.md section 14.3 (`benchmarks/pseudo_validation.py`), not assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from .toy_sounds import coloured_noise, damped_kernel, ring, time_window

SEVERITIES = (1, 2, 3)
_ADD_DB = (-20.0, -14.0, -8.0)  # added tone / noise RMS relative to the clip's, per severity


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12)


def _gate(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """A fault present over a random 40-100 % of the clip (soft edges)."""
    seconds = n / sr
    dur = rng.uniform(0.4, 1.0) * seconds
    t0 = rng.uniform(0.0, seconds - dur)
    return time_window(n, sr, t0, t0 + dur)


def tone(wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A steady whine (300 Hz - 6 kHz) switched on for part of the clip."""
    t = np.arange(len(wave)) / sr
    f = np.exp(rng.uniform(np.log(300.0), np.log(6000.0)))
    added = (
        np.sqrt(2)
        * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        * _gate(rng, len(wave), sr)
    )
    return wave + added * _rms(wave) * 10 ** (_ADD_DB[severity - 1] / 20)


def harmonics(wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A harmonic series (80-400 Hz fundamental, 6 harmonics falling as 1/k): a new rotating
    part."""
    t = np.arange(len(wave)) / sr
    f0 = rng.uniform(80.0, 400.0)
    added = sum(
        (
            np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
            for k in range(1, 7)
            if k * f0 < sr / 2
        ),
        np.zeros(len(wave)),
    )
    added = added / _rms(added) * _gate(rng, len(wave), sr)
    return wave + added * _rms(wave) * 10 ** (_ADD_DB[severity - 1] / 20)


def clicks(wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Short broadband clicks at random times (a loose part), peaks 1.5 / 3 / 6 x the clip's RMS."""
    n = len(wave)
    times = np.sort(rng.uniform(0, n / sr, rng.poisson(3 * n / sr) + 1))
    kernel = damped_kernel(sr, rng.uniform(3000.0, 7000.0), 0.0004)
    return wave + ring(n, sr, times, (1.5, 3.0, 6.0)[severity - 1] * _rms(wave), kernel)


def impacts(wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Periodic impacts ringing a structural resonance (a bearing defect), 5-40 per second."""
    n = len(wave)
    rate = rng.uniform(5.0, 40.0)
    times = np.arange(rng.uniform(0, 1 / rate), n / sr, 1 / rate) + rng.normal(0, 0.0005)
    kernel = damped_kernel(sr, rng.uniform(1000.0, 5000.0), 0.003)
    return wave + ring(n, sr, times, (0.25, 0.5, 1.0)[severity - 1] * _rms(wave), kernel)


def amplitude_modulation(
    wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int
) -> np.ndarray:
    """The level swings at 2-15 Hz (an imbalance or a rubbing contact), depth 0.2 / 0.4 / 0.7."""
    t = np.arange(len(wave)) / sr
    depth = (0.2, 0.4, 0.7)[severity - 1]
    return wave * (1 + depth * np.sin(2 * np.pi * rng.uniform(2.0, 15.0) * t))


def frequency_modulation(
    wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int
) -> np.ndarray:
    """The speed wobbles at 1-8 Hz by 0.5 / 1 / 2 %: the clip read at a periodically varying
    rate."""
    n = len(wave)
    fm, dev = rng.uniform(1.0, 8.0), (0.005, 0.01, 0.02)[severity - 1]
    t = np.arange(n)
    warped = t + dev * sr / (2 * np.pi * fm) * np.sin(2 * np.pi * fm * t / sr)
    return np.interp(np.clip(warped, 0, n - 1), t, wave)


def spectral_tilt(wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """The spectrum tilts by +-1.5 / 3 / 6 dB per octave about 1 kHz, the overall RMS kept."""
    spec = np.fft.rfft(wave)
    f = np.maximum(np.fft.rfftfreq(len(wave), 1 / sr), 20.0)
    slope = (1.5, 3.0, 6.0)[severity - 1] * rng.choice((-1.0, 1.0))
    out = np.fft.irfft(spec * 10 ** (slope * np.log2(f / 1000.0) / 20), len(wave))
    return out * _rms(wave) / _rms(out)


def band_noise(wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Noise in a random one-octave band (250 Hz - 7 kHz centre): leaking air, a worn seal."""
    centre = np.exp(rng.uniform(np.log(250.0), np.log(7000.0)))
    band = (centre / np.sqrt(2), min(centre * np.sqrt(2), sr / 2 - 1))
    noise = coloured_noise(rng, len(wave), sr, slope=0.0, band=band) * _gate(rng, len(wave), sr)
    return wave + noise * _rms(wave) * 10 ** (_ADD_DB[severity - 1] / 20)


def time_stretch(wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """The machine runs 2 / 5 / 10 % faster or slower (pitch and tempo together), same length."""
    n = len(wave)
    factor = 1 + (0.02, 0.05, 0.10)[severity - 1] * rng.choice((-1.0, 1.0))
    positions = np.arange(n) * factor
    looped = np.concatenate([wave, wave])  # a slower machine needs more source samples than it has
    return np.interp(positions % (2 * n - 1), np.arange(2 * n), looped)


def level_shift(wave: np.ndarray, severity: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """The whole clip 2 / 4 / 8 dB louder or quieter."""
    del sr
    return wave * 10 ** ((2.0, 4.0, 8.0)[severity - 1] * rng.choice((-1.0, 1.0)) / 20)


KINDS: dict[str, Callable[[np.ndarray, int, np.random.Generator, int], np.ndarray]] = {
    "tone": tone,
    "harmonics": harmonics,
    "clicks": clicks,
    "impacts": impacts,
    "am": amplitude_modulation,
    "fm": frequency_modulation,
    "tilt": spectral_tilt,
    "band_noise": band_noise,
    "time_stretch": time_stretch,
    "level": level_shift,
}


def pseudo_anomaly(
    wave: np.ndarray, kind: str, severity: int, rng: np.random.Generator, sample_rate: int = 16_000
) -> np.ndarray:
    """``wave`` altered by one fault ``kind`` at ``severity`` (1-3), float32 in [-1, 1]."""
    if kind not in KINDS:
        raise ValueError(f"unknown pseudo-anomaly kind {kind!r}; known: {', '.join(KINDS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    out = KINDS[kind](np.asarray(wave, dtype=np.float64), severity, rng, sample_rate)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def pseudo_anomalies(
    waves: Sequence[np.ndarray],
    seed: int = 0,
    kinds: Sequence[str] = tuple(KINDS),
    severities: Sequence[int] = SEVERITIES,
    sample_rate: int = 16_000,
) -> Iterator[tuple[int, str, int, np.ndarray]]:
    """(source clip index, kind, severity, waveform) for every clip, kind and severity, each
    from its own generator seeded by ``seed`` and the triple (reproducible, order-independent)."""
    for i, wave in enumerate(waves):
        for k, kind in enumerate(kinds):
            for severity in severities:
                rng = np.random.default_rng([seed, i, k, severity])
                yield i, kind, severity, pseudo_anomaly(wave, kind, severity, rng, sample_rate)
