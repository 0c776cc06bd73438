"""Synthetic "toy factory": physically motivated machine sounds with known, graded faults.

Why: tests, the demo and benchmarks need a labelled data set that is small, deterministic,
generated in seconds, and whose anomalies are known in time and frequency (for checking
anomaly maps). `toy_clip` synthesises one clip; `make_toy_dataset` writes a DCASE 2022+
folder tree of them plus ``fault_regions.csv``. See ``docs/toy_factory.md`` for the physics.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..fsutil import atomic_write_bytes, atomic_write_text
from ..progress import progress as show_progress
from .toy_faults import FaultRegion, inject
from .toy_sounds import MACHINE_SOUNDS, coloured_noise

MACHINES = ("fan", "gearbox", "pump")
DOMAINS = ("source", "target")
ANOMALY_KINDS = ("bearing", "imbalance", "rubbing", "drift", "clicks")
SEVERITIES = (1, 2, 3)
TARGET_TRAIN_FRACTION = 0.1  # DCASE 2022+: 990 source vs 10 target training clips per section

# Attribute values each domain draws from (discrete, as in DCASE). ``speed`` is shaft rpm,
# ``load`` a percentage, ``bg`` the colour of the background noise.
Attributes = dict[str, float | str]  # one clip's operating condition: speed, load, background

DOMAIN_ATTRIBUTES: dict[str, dict[str, dict[str, tuple]]] = {
    "fan": {
        "source": {"speed": (1200, 1350, 1500), "load": (40, 60), "bg": ("pink",)},
        "target": {"speed": (1800,), "load": (60,), "bg": ("white",)},
    },
    "gearbox": {
        "source": {"speed": (900, 1050, 1200), "load": (30, 50), "bg": ("pink",)},
        "target": {"speed": (1500, 1650), "load": (70,), "bg": ("brown",)},
    },
    "pump": {
        "source": {"speed": (1450, 1500), "load": (40, 60), "bg": ("pink",)},
        "target": {"speed": (2900,), "load": (50,), "bg": ("white",)},
    },
}
BG_LEVEL = {"source": 0.012, "target": 0.016}  # background RMS before gain; target plant is louder
BG_SLOPE = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**slope


# -- public API --------------------------------------------------------------------------------
def draw_attributes(machine: str, domain: str, rng: np.random.Generator) -> Attributes:
    """One clip's operating condition (speed, load, background) drawn from its domain's values."""
    if machine not in DOMAIN_ATTRIBUTES:
        raise ValueError(f"unknown toy machine {machine!r}; known: {MACHINES}")
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    choices = DOMAIN_ATTRIBUTES[machine][domain]
    return {key: values[rng.integers(len(values))] for key, values in choices.items()}


def toy_clip(
    machine: str,
    domain: str = "source",
    anomaly_kind: str | None = None,
    severity: int = 1,
    seed: int = 0,
    seconds: float = 10.0,
    sample_rate: int = 16_000,
    section: int = 0,
    attributes: Attributes | None = None,
) -> tuple[np.ndarray, FaultRegion | None]:
    """One float32 waveform in [-1, 1] and the fault region (None for a normal clip).

    Deterministic in ``seed``. ``attributes`` (speed/load/bg) default to a draw from ``domain``.
    """
    if machine not in MACHINE_SOUNDS:
        raise ValueError(f"unknown toy machine {machine!r}; known: {MACHINES}")
    if anomaly_kind is not None and anomaly_kind not in ANOMALY_KINDS:
        raise ValueError(f"unknown anomaly kind {anomaly_kind!r}; known: {ANOMALY_KINDS}")
    if anomaly_kind is not None and severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    rng = np.random.default_rng(seed)
    attrs = attributes if attributes is not None else draw_attributes(machine, domain, rng)
    n = round(seconds * sample_rate)
    wave, m = MACHINE_SOUNDS[machine](
        rng, n, sample_rate, float(attrs["speed"]), float(attrs["load"]), section
    )
    wave += BG_LEVEL[domain] * coloured_noise(rng, n, sample_rate, BG_SLOPE[str(attrs["bg"])])
    region = None
    if anomaly_kind is not None:
        level = float(np.sqrt(np.mean(wave**2)))
        fault, region = inject(anomaly_kind, severity, m, level, rng, n, sample_rate, seconds)
        wave += fault
    # no per-clip normalisation: levels (load, imbalance, background) must stay meaningful
    return np.clip(wave, -1.0, 1.0).astype(np.float32), region


def _attr_tag(attrs: Attributes) -> str:
    return "_".join(f"{k}_{v}" for k, v in attrs.items())


def _wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _plan(n_train: int, n_test: int) -> list[tuple[str, str, int]]:
    """(split, domain, label) of every clip of one section, DCASE proportions: ~10% of the
    training clips (at least one, once there are two) are target domain."""
    n_target = max(1, round(TARGET_TRAIN_FRACTION * n_train)) if n_train >= 2 else 0
    plan = [("train", "source", 0)] * (n_train - n_target) + [("train", "target", 0)] * n_target
    for i in range(n_test):  # alternate normal/anomaly, then source/target
        label = i % 2
        domain = DOMAINS[(i // 2) % 2]
        plan.append(("test", domain, label))
    return plan


@dataclass(frozen=True)
class _ClipJob:
    """Everything one clip of a data set needs, so that a worker process can write it alone."""

    directory: Path
    sound: str
    split: str
    domain: str
    section: str
    section_index: int
    number: int
    kind: str | None
    severity: int
    seed: np.random.SeedSequence
    seconds: float
    sample_rate: int


def _write_clip(job: _ClipJob) -> tuple[str, Attributes, FaultRegion | None]:
    """Synthesise and write one clip; (file name, attributes, fault region). Nothing is kept."""
    rng = np.random.default_rng(job.seed)
    attrs = draw_attributes(job.sound, job.domain, rng)
    wave, region = toy_clip(
        job.sound,
        job.domain,
        job.kind,
        job.severity,
        seed=int(rng.integers(2**63)),
        seconds=job.seconds,
        sample_rate=job.sample_rate,
        section=job.section_index,
        attributes=attrs,
    )
    state = "normal" if job.kind is None else "anomaly"
    name = (
        f"section_{job.section}_{job.domain}_{job.split}_{state}_{job.number:04d}_"
        f"{_attr_tag(attrs)}.wav"
    )
    atomic_write_bytes(job.directory / job.split / name, _wav_bytes(wave, job.sample_rate))
    return name, attrs, region


def _section_jobs(
    mdir: Path,
    machine: str,
    sound: str,
    mi: int,
    si: int,
    section: str,
    n_train: int,
    n_test: int,
    seed: int,
    seconds: float,
    sample_rate: int,
) -> list[_ClipJob]:
    """One section's clips in file order: seeds, fault kinds and per-(split, domain, state)
    numbers."""
    jobs: list[_ClipJob] = []
    counters: dict[tuple[str, str, int], int] = {}
    n_anom = 0
    for ci, (split, domain, label) in enumerate(_plan(n_train, n_test)):
        kind, severity = None, 1
        if label == 1:
            kind = ANOMALY_KINDS[n_anom % len(ANOMALY_KINDS)]
            severity = SEVERITIES[(n_anom // len(ANOMALY_KINDS)) % len(SEVERITIES)]
            n_anom += 1
        key = (split, domain, label)
        number = counters.get(key, 0)
        counters[key] = number + 1
        jobs.append(
            _ClipJob(
                mdir,
                sound,
                split,
                domain,
                section,
                si,
                number,
                kind,
                severity,
                np.random.SeedSequence([seed, mi, si, ci, sum(map(ord, machine))]),
                seconds,
                sample_rate,
            )
        )
    return jobs


def _sounds(machines: Sequence[str], sounds: Mapping[str, str] | None) -> dict[str, str]:
    """``sounds`` as a dict, checked: every machine type's toy sound must be known."""
    sounds = dict(sounds or {})
    for machine in machines:
        if sounds.get(machine, machine) not in MACHINE_SOUNDS:
            raise ValueError(
                f"unknown toy machine {sounds.get(machine, machine)!r} for machine "
                f"type {machine!r}; known sounds: {MACHINES}"
            )
    return sounds


def make_toy_dataset(
    root: str | Path,
    machines: Sequence[str] = ("fan", "gearbox"),
    n_train: int = 20,
    n_test: int = 20,
    seconds: float = 10.0,
    sample_rate: int = 16_000,
    seed: int = 0,
    sections: Sequence[str] = ("00",),
    sounds: Mapping[str, str] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """Write a DCASE 2022+ style data set of toy machines under ``root`` and return ``root``.

    Per machine: ``train/`` (normal, ~10% target domain), ``test/`` (half anomalies, half
    target), ``attributes_XX.csv`` and ``fault_regions.csv``. Same arguments -> identical files.
    ``sounds`` maps a machine-type name to the toy sound it uses (default: the name itself, which
    must then be one of `MACHINES`), e.g. ``{"valve": "pump"}`` for DCASE 2023 names. Clips are
    written one at a time (``workers`` processes write them in parallel, with identical files),
    so that any number of clips fits in memory.
    """
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    sounds = _sounds(machines, sounds)
    root = Path(root)
    total = len(machines) * len(sections) * (n_train + n_test)
    bar = show_progress(desc="toy", unit="clip", total=total, enabled=progress)
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        for mi, machine in enumerate(machines):
            mdir = root / machine
            faults: list[list[object]] = []
            for si, section in enumerate(sections):
                jobs = _section_jobs(
                    mdir,
                    machine,
                    sounds.get(machine, machine),
                    mi,
                    si,
                    section,
                    n_train,
                    n_test,
                    seed,
                    seconds,
                    sample_rate,
                )
                faults += _write_section(pool, jobs, machine, mdir, section, bar)
            atomic_write_text(
                mdir / "fault_regions.csv",
                _csv([["file", "kind", "severity", "t0", "t1", "f0", "f1"], *faults]),
            )
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    return root


def _write_section(
    pool: ProcessPoolExecutor | None,
    jobs: list[_ClipJob],
    machine: str,
    mdir: Path,
    section: str,
    bar: Any,
) -> list[list[object]]:
    """Write one section's clips (in ``pool`` when given) and its ``attributes_XX.csv``;
    the ``fault_regions.csv`` rows of its anomalous clips."""
    results = pool.map(_write_clip, jobs, chunksize=16) if pool else map(_write_clip, jobs)
    attr_rows: list[list[object]] = []
    faults: list[list[object]] = []
    for job, (name, attrs, region) in zip(jobs, results, strict=True):
        attr_rows.append(
            [f"{machine}/{job.split}/{name}"] + [x for kv in attrs.items() for x in kv]
        )
        if region is not None:
            faults.append(
                [
                    f"{job.split}/{name}",
                    region.kind,
                    region.severity,
                    f"{region.t0:.3f}",
                    f"{region.t1:.3f}",
                    f"{region.f0:.1f}",
                    f"{region.f1:.1f}",
                ]
            )
        bar.update()
    header = ["file_name"] + [
        f"d{i}{c}" for i in range(1, len(attr_rows[0]) // 2 + 1) for c in "pv"
    ]
    atomic_write_text(mdir / f"attributes_{section}.csv", _csv([header, *attr_rows]))
    return faults


def _csv(rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()
