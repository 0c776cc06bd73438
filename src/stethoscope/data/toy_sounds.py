"""The toy factory's healthy machine sounds (fan, gearbox, pump) and their building blocks:
coloured noise, speed profiles, harmonics, damped resonances. `toy_factory` adds the
background, the domains' attributes and the faults; ``docs/toy_factory.md`` has the physics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft


# -- building blocks -------------------------------------------------------------------------
def coloured_noise(
    rng: np.random.Generator, n: int, sr: int, slope: float, band: tuple[float, float] | None = None
) -> np.ndarray:
    """Unit-RMS Gaussian noise with power spectrum ~ 1/f**slope, optionally band-limited."""
    spec = rng.standard_normal((n // 2 + 1, 2), dtype=np.float32).view(np.complex64)[:, 0]
    freqs = np.fft.rfftfreq(n, 1 / sr).astype(np.float32)
    shape = np.maximum(freqs, np.float32(20.0)) ** np.float32(-slope / 2)
    if band is not None:
        shape[(freqs < band[0]) | (freqs > band[1])] = 0.0
    out = scipy.fft.irfft(spec * shape, n)
    return out / np.float32(np.sqrt(np.mean(out**2)) + 1e-12)


def sin_at(phase: np.ndarray, order: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """float32 sin(order * phase + offset): the argument is reduced in float64, then the
    (SIMD-fast) float32 sine is taken; 1e-7 error is far below 16-bit PCM resolution."""
    return np.sin(np.mod(order * phase + offset, 2 * np.pi).astype(np.float32))


def speed_profile(
    rng: np.random.Generator, n: int, sr: int, f_shaft: float, jitter: float
) -> np.ndarray:
    """Instantaneous shaft frequency (Hz per sample): nominal plus a slow random wander."""
    knots = rng.standard_normal(int(n / sr * 4) + 2)  # 4 knots per second -> slow wander
    wander = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    return f_shaft * (1.0 + jitter * wander)


def damped_kernel(sr: int, freq: float, decay_s: float) -> np.ndarray:
    """Impulse response of a structural resonance: exp-decaying sinusoid."""
    t = np.arange(int(decay_s * 6 * sr)) / sr
    return np.exp(-t / decay_s) * np.sin(2 * np.pi * freq * t)


def ring(
    n: int, sr: int, times: np.ndarray, amps: np.ndarray | float, kernel: np.ndarray
) -> np.ndarray:
    """Sum of ``kernel`` copies started at ``times`` (s) scaled by ``amps``: impacts exciting a
    resonance. Sparse impacts make this cheaper than a full-length convolution."""
    times = np.asarray(times, dtype=np.float64)
    starts = np.clip((times * sr).astype(np.int64), 0, n - 1)
    idx = starts[:, None] + np.arange(len(kernel))
    weights = (
        np.broadcast_to(
            np.asarray(amps, dtype=np.float64).reshape(-1, 1) if np.ndim(amps) else amps,
            (len(times), 1),
        )
        * kernel
    )
    return np.bincount(idx.ravel(), weights.ravel(), minlength=n + len(kernel))[:n].astype(
        np.float32
    )


def time_window(n: int, sr: int, t0: float, t1: float, ramp_s: float = 0.05) -> np.ndarray:
    """0..1 gate that is 1 on [t0, t1] with short raised-cosine edges (no clicks at the edges)."""
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    x = np.clip(np.minimum(t - np.float32(t0), np.float32(t1) - t) / np.float32(ramp_s), 0.0, 1.0)
    edge = (x > 0) & (x < 1)
    x[edge] = 0.5 - 0.5 * np.cos(np.pi * x[edge])
    return x


# -- machines ----------------------------------------------------------------------------------
@dataclass
class MachineState:
    """What an anomaly needs to know about the normal sound it is injected into."""

    f_inst: np.ndarray  # instantaneous shaft frequency per sample
    phase: np.ndarray  # shaft rotation phase (radians) per sample
    f_shaft: float  # nominal shaft frequency
    tone_order: int  # a prominent harmonic order (of the shaft) that can drift
    tone_amp: float
    one_x_amp: float  # residual 1x (imbalance) amplitude of a healthy machine
    bearing_order: float  # outer-race defect frequency / shaft frequency
    resonance: float  # structural resonance excited by impacts (Hz)


def harmonic_stack(
    phase: np.ndarray,
    base_order: float,
    amps: Sequence[float] | np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """sum_k amps[k-1] * sin(k * base_order * phase + random phase), by complex powers (fast)."""
    arg = np.mod(base_order * phase, 2 * np.pi).astype(np.float32)
    z = np.cos(arg) + np.complex64(1j) * np.sin(arg)
    acc = np.ones_like(z)
    out = np.zeros(len(phase), dtype=np.float32)
    for amp in amps:
        acc *= z
        out += (acc * np.complex64(amp * np.exp(1j * rng.uniform(0, 2 * np.pi)))).imag
    return out


def _fan(
    rng: np.random.Generator, n: int, sr: int, rpm: float, load: float, section: int
) -> tuple[np.ndarray, MachineState]:
    """Blade-pass harmonics (with speed jitter) over amplitude-modulated broadband flow noise."""
    blades = 7 + section  # each section is a fan model with another blade count
    f_inst = speed_profile(rng, n, sr, rpm / 60, jitter=0.004)
    phase = 2 * np.pi * np.cumsum(f_inst) / sr
    k = np.arange(1, 9)
    amps = 0.05 * (0.5 + load / 100) * k**-1.0 * rng.uniform(0.8, 1.2, len(k))
    tonal = harmonic_stack(phase, blades, amps, rng)
    one_x = 0.01
    tonal += one_x * sin_at(phase, offset=rng.uniform(0, 2 * np.pi))
    flow = coloured_noise(rng, n, sr, slope=0.7, band=(60, 7000))
    flow *= 0.05 * (0.4 + load / 100) * (1 + 0.15 * sin_at(phase, blades))
    return tonal + flow, MachineState(
        f_inst, phase, rpm / 60, 2 * blades, amps[1], one_x, 3.57, 3000.0
    )


def _gearbox(
    rng: np.random.Generator, n: int, sr: int, rpm: float, load: float, section: int
) -> tuple[np.ndarray, MachineState]:
    """Gear-mesh harmonics amplitude-modulated by the shaft (sidebands) plus one weak
    impact per revolution exciting a housing resonance."""
    teeth = 27 + 2 * section
    f_inst = speed_profile(rng, n, sr, rpm / 60, jitter=0.002)
    phase = 2 * np.pi * np.cumsum(f_inst) / sr
    k = np.arange(1, 6)
    amps = 0.05 * (0.6 + load / 100) * k**-0.8 * rng.uniform(0.8, 1.2, len(k))
    am = (
        1 + 0.3 * sin_at(phase, 1, np.pi / 2) + 0.1 * sin_at(phase, 2, 1.0 + np.pi / 2)
    )  # sidebands at mesh +- 1x, 2x
    tonal = am * harmonic_stack(phase, teeth, amps, rng)
    one_x = 0.01
    tonal += one_x * sin_at(phase)
    rev_times = np.flatnonzero(np.diff(np.floor(phase / (2 * np.pi))) > 0) / sr
    impacts = ring(
        n,
        sr,
        rev_times,
        0.1 * rng.uniform(0.8, 1.2, len(rev_times)),
        damped_kernel(sr, 2200.0, 0.004),
    )
    noise = 0.015 * (0.5 + load / 100) * coloured_noise(rng, n, sr, slope=1.0, band=(50, 7500))
    return tonal + impacts + noise, MachineState(
        f_inst, phase, rpm / 60, teeth * 2, amps[1], one_x, 4.1, 4200.0
    )


def _pump(
    rng: np.random.Generator, n: int, sr: int, rpm: float, load: float, section: int
) -> tuple[np.ndarray, MachineState]:
    """Vane-pass harmonics plus turbulent flow noise whose level follows the load."""
    vanes = 5 + section
    f_inst = speed_profile(rng, n, sr, rpm / 60, jitter=0.003)
    phase = 2 * np.pi * np.cumsum(f_inst) / sr
    k = np.arange(1, 7)
    amps = 0.04 * (0.5 + load / 100) * k**-1.2 * rng.uniform(0.8, 1.2, len(k))
    tonal = harmonic_stack(phase, vanes, amps, rng)
    one_x = 0.01
    tonal += one_x * sin_at(phase)
    flow = 0.04 * (0.3 + load / 100) * coloured_noise(rng, n, sr, slope=0.4, band=(100, 6000))
    return tonal + flow, MachineState(
        f_inst, phase, rpm / 60, 2 * vanes, amps[1], one_x, 3.05, 3500.0
    )


MACHINE_SOUNDS = {"fan": _fan, "gearbox": _gearbox, "pump": _pump}
