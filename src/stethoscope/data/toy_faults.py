"""The toy factory's faults: each anomaly kind (bearing, imbalance, rubbing, drift, clicks) as a
signal added to a healthy clip, at three calibrated severities, with the time-frequency region
it occupies (`FaultRegion`, for checking anomaly maps). ``docs/toy_factory.md`` has the physics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .toy_sounds import MachineState, coloured_noise, damped_kernel, ring, sin_at, time_window


@dataclass(frozen=True)
class FaultRegion:
    """Where an injected fault lives: seconds [t0, t1] and Hz [f0, f1]."""

    kind: str
    severity: int
    t0: float
    t1: float
    f0: float
    f1: float


# -- anomalies ---------------------------------------------------------------------------------
# Per-kind strength per severity level 1, 2, 3 (calibrated: see docs/toy_factory.md). Impact,
# burst and click amplitudes are in multiples of the healthy clip's RMS (machine + background).
_STRENGTH = {
    "bearing": (0.25, 0.5, 1.0),  # impact amplitude / level
    "imbalance": (1.0, 2.0, 4.0),  # added 1x amplitude, in multiples of the healthy 1x
    "rubbing": (0.25, 0.5, 1.0),  # burst RMS / level
    "drift": (0.03, 0.06, 0.10),  # final relative detuning of one harmonic
    "clicks": (1.5, 3.0, 6.0),  # click amplitude / level
}


def inject(
    kind: str,
    severity: int,
    m: MachineState,
    level: float,
    rng: np.random.Generator,
    n: int,
    sr: int,
    seconds: float,
) -> tuple[np.ndarray, FaultRegion]:
    """The fault signal to add to a normal clip (of RMS ``level``) and the region it occupies."""
    s = _STRENGTH[kind][severity - 1] * (level if kind in ("bearing", "rubbing", "clicks") else 1.0)
    dur = rng.uniform(0.4, 0.7) * seconds
    t0 = float(rng.uniform(0, seconds - dur))
    t1 = t0 + dur
    gate = time_window(n, sr, t0, t1)
    if kind == "bearing":  # outer-race defect: impacts at BPFO ringing a resonance
        f_def = m.bearing_order * m.f_shaft
        times = np.arange(t0, t1, 1 / f_def)
        times = times + rng.normal(
            0, 0.0005, len(times)
        )  # slip: defect impacts are not exactly periodic
        amps = s * (1 + 0.5 * np.cos(2 * np.pi * m.f_shaft * times))  # load-zone modulation by 1x
        sig = ring(n, sr, times, amps, damped_kernel(sr, m.resonance, 0.002))
        bw = 1 / (np.pi * 0.002)
        return sig, FaultRegion(kind, severity, t0, t1, m.resonance - 3 * bw, m.resonance + 3 * bw)
    if kind == "imbalance":  # mass imbalance: the 1x component grows
        sig = gate * s * m.one_x_amp * sin_at(m.phase)
        return sig, FaultRegion(kind, severity, t0, t1, 0.8 * m.f_inst.min(), 1.2 * m.f_inst.max())
    if kind == "rubbing":  # rotor touches stator: short broadband bursts, about once per revolution
        starts = np.arange(t0, t1 - 0.03, 1 / m.f_shaft)
        starts = starts[rng.random(len(starts)) < 0.6]
        env = np.zeros(n)
        burst = np.hanning(int(0.02 * sr))
        for st in (starts * sr).astype(int):
            env[st : st + len(burst)] += burst[: n - st]
        lo, hi = 1000.0, 6000.0
        sig = s * env * coloured_noise(rng, n, sr, slope=0.0, band=(lo, hi))
        return sig, FaultRegion(kind, severity, t0, t1, lo, hi)
    if kind == "drift":  # one harmonic slowly detunes from the others (e.g. a loosening part)
        ramp = np.clip((np.arange(n) / sr - t0) / dur, 0, 1)
        base = m.tone_order * m.f_inst
        detuned = base * (1 + s * ramp)
        sig = 0.6 * m.tone_amp * gate * sin_at(np.cumsum(detuned), 2 * np.pi / sr)
        f_nom = m.tone_order * m.f_shaft
        return sig, FaultRegion(kind, severity, t0, t1, 0.98 * f_nom, (1 + s) * 1.02 * f_nom)
    if kind == "clicks":  # intermittent loose-part clicks at random times
        count = rng.poisson(3 * dur) + 1
        times = np.sort(rng.uniform(t0, t1, count))
        kernel = damped_kernel(sr, 5000.0, 0.0004)
        sig = ring(n, sr, times, s * rng.uniform(0.6, 1.0, count), kernel)
        return sig, FaultRegion(kind, severity, t0, t1, 2000.0, 8000.0)
    raise AssertionError(f"unhandled anomaly kind {kind!r}")
