"""The sample-level checks of one decoded audio channel: `WaveStats` reduces the samples to a
handful of statistics (small enough to cache beside a file's features) and turns them into
`quality.Problem` findings (NaN, all zeros, clipping, DC offset, near silence, ...)."""

from __future__ import annotations

from dataclasses import astuple, dataclass

import numpy as np

from .quality import Problem, too_short

DC_OFFSET = 0.01  # |mean sample| (full scale 1.0): -40 dBFS of DC, and over a tenth of the AC level
CLIPPED_FRACTION = 0.003  # share of samples at full scale (|x| >= 0.999); random bytes: 0.001
SILENCE_DBFS = -70.0  # AC level under which a clip is near silence (1-LSB noise is -90)
LOUD_DBFS = -10.0  # AC level over which uncorrelated samples are full-scale white noise
WHITE_CORRELATION = (
    0.1  # |lag-1 autocorrelation| under which samples look uncorrelated (random bytes)
)
CONSTANT_FRACTION = 0.5  # share of samples equal to the previous one


@dataclass(frozen=True)
class WaveStats:
    """Sample statistics of one decoded channel at its native rate: what the sample-level
    checks need, small enough to cache beside a file's features."""

    samples: int
    sample_rate: int
    finite: bool
    peak: float
    mean: float
    ac_rms: float
    clipped: float  # share of samples with |x| >= 0.999
    repeated: float  # share of samples equal to the previous one
    lag1: float  # lag-1 autocorrelation of the AC part (about 0 for random bytes, near 1 for sound)

    @classmethod
    def of(cls, wave: np.ndarray, sample_rate: int) -> WaveStats:
        wave = np.asarray(wave, dtype=np.float32)
        n = len(wave)
        if n == 0 or not np.isfinite(wave).all():
            return cls(
                n,
                sample_rate,
                n > 0 and bool(np.isfinite(wave).all()),
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
            )
        with np.errstate(
            over="ignore", invalid="ignore"
        ):  # samples near 1e25 overflow float32: inf, no warning
            return cls._finite(wave, n, sample_rate)

    @classmethod
    def _finite(cls, wave: np.ndarray, n: int, sample_rate: int) -> WaveStats:
        mean = float(wave.mean(dtype=np.float64))
        ac = wave - np.float32(mean)
        power = float(np.dot(ac, ac))
        return cls(
            n,
            sample_rate,
            True,
            float(np.abs(wave).max()),
            mean,
            float(np.sqrt(power / n)),
            float(np.count_nonzero(np.abs(wave) >= 0.999) / n),
            float(np.count_nonzero(wave[1:] == wave[:-1]) / max(n - 1, 1)),
            float(np.dot(ac[1:], ac[:-1]) / power) if power > 0 else 0.0,
        )

    def as_array(self) -> np.ndarray:
        return np.array(astuple(self), dtype=np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> WaveStats:
        n, sr, finite, *rest = (float(v) for v in values)
        return cls(int(n), int(sr), bool(finite), *rest)

    @property
    def seconds(self) -> float:
        return self.samples / max(self.sample_rate, 1)

    def problems(self, min_seconds: float = 0.0) -> list[Problem]:
        """Unreadable: no samples, NaN/inf, all zeros, too short. Suspicious: over full scale,
        clipping, a mostly constant signal, DC offset, near silence, full-scale noise."""
        if self.samples == 0:
            return [Problem("empty audio (0 samples)", unreadable=True)]
        if not self.finite:
            return [Problem("audio contains NaN or infinite samples", unreadable=True)]
        if self.peak == 0:
            return [Problem("audio is all zeros (silent)", unreadable=True)]
        short = too_short(self.seconds, min_seconds)
        if short:
            return [short]
        out, level = [], 20 * np.log10(max(self.ac_rms, 1e-12))
        if self.peak > 1.0:
            out.append(
                Problem(
                    f"samples exceed full scale: peak {self.peak:.4g} (float samples "
                    "should lie within -1..1)"
                )
            )
        elif self.clipped >= CLIPPED_FRACTION:
            out.append(Problem(f"clipped: {100 * self.clipped:.2g}% of samples at full scale"))
        if self.repeated >= CONSTANT_FRACTION:
            out.append(
                Problem(
                    f"mostly constant: {100 * self.repeated:.3g}% of samples repeat "
                    "the previous one (a stuck or DC-only signal)"
                )
            )
        elif level < SILENCE_DBFS:
            out.append(
                Problem(f"near silence: level {level:.0f} dBFS (under {SILENCE_DBFS:.0f} dBFS)")
            )
        if abs(self.mean) >= max(DC_OFFSET, 0.1 * self.ac_rms):
            out.append(Problem(f"DC offset: mean sample value {self.mean:.3g}"))
        if level >= LOUD_DBFS and abs(self.lag1) < WHITE_CORRELATION and self.peak <= 1.0:
            out.append(
                Problem(
                    f"full-scale white noise: level {level:.1f} dBFS with "
                    "uncorrelated samples (random bytes rather than a recording?)"
                )
            )
        return out
