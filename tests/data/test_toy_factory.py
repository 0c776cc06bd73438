"""Toy factory: determinism, layout and CSVs, physics of the normal sounds, faults where they are
said to be."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.data import make_toy_dataset, scan, toy_clip
from stethoscope.data.toy_factory import ANOMALY_KINDS, MACHINES

SR = 16_000


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _band_energy(
    wave: np.ndarray, f0: float, f1: float, t0: float = 0.0, t1: float | None = None
) -> float:
    part = wave[int(t0 * SR) : None if t1 is None else int(t1 * SR)].astype(np.float64)
    spec = np.abs(np.fft.rfft(part)) ** 2 / len(part)  # Parseval: comparable across spans
    freqs = np.fft.rfftfreq(len(part), 1 / SR)
    return float(spec[(freqs >= f0) & (freqs <= f1)].sum())


def test_dataset_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    kwargs = dict(machines=("fan", "gearbox"), n_train=4, n_test=4, seconds=0.5)
    a = _digest(make_toy_dataset(tmp_path / "a", seed=3, **kwargs))
    b = _digest(make_toy_dataset(tmp_path / "b", seed=3, **kwargs))
    c = _digest(make_toy_dataset(tmp_path / "c", seed=4, **kwargs))
    assert a == b
    assert a.keys() != c.keys() or a != c


def test_layout_and_csvs(tmp_path: Path) -> None:
    root = make_toy_dataset(
        tmp_path,
        machines=("gearbox",),
        n_train=20,
        n_test=20,
        seconds=1.0,
        sample_rate=SR,
        sections=("00", "01"),
    )
    mdir = root / "gearbox"
    wavs = sorted(mdir.rglob("*.wav"))
    assert len(wavs) == 2 * 40
    info = sf.info(str(wavs[0]))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", SR)
    clips = scan(root)
    per_section = Counter((c.section, c.split, c.domain, c.label) for c in clips)
    for s in ("00", "01"):
        assert (
            per_section[(s, "train", "source", 0)] == 18
            and per_section[(s, "train", "target", 0)] == 2
        )
        assert (
            sum(
                v
                for (sec, split, _, lab), v in per_section.items()
                if sec == s and split == "test" and lab == 1
            )
            == 10
        )
        assert (
            sum(
                v
                for (sec, split, dom, _), v in per_section.items()
                if sec == s and split == "test" and dom == "target"
            )
            == 10
        )
    # attributes CSV: DCASE 2022+ columns, one row per clip, values as in the file name
    rows = list(csv.reader((mdir / "attributes_01.csv").read_text().splitlines()))
    assert rows[0] == ["file_name", "d1p", "d1v", "d2p", "d2v", "d3p", "d3v"]
    assert len(rows) == 41 and all(
        r[0].startswith("gearbox/") and "section_01_" in r[0] for r in rows[1:]
    )
    assert all((mdir.parent / r[0]).is_file() for r in rows[1:])
    # fault regions: exactly the anomalies, inside the clip, with a known kind and severity
    faults = list(csv.DictReader((mdir / "fault_regions.csv").read_text().splitlines()))
    anomalies = {str(c.path.relative_to(mdir)) for c in clips if c.label == 1}
    assert {f["file"] for f in faults} == anomalies
    assert {f["kind"] for f in faults} == set(ANOMALY_KINDS)
    assert {f["severity"] for f in faults} <= {"1", "2", "3"}
    for f in faults:
        assert (
            0 <= float(f["t0"]) < float(f["t1"]) <= 1.0
            and 0 <= float(f["f0"]) < float(f["f1"]) <= SR / 2
        )


def test_toy_clip_is_bounded() -> None:
    for seed in range(3):
        wave, _ = toy_clip("gearbox", "target", "rubbing", 2, seed=seed)
        assert wave.shape == (10 * SR,) and wave.dtype == np.float32
        assert np.abs(wave).max() < 1.0 and 0.01 < np.sqrt(np.mean(wave**2)) < 0.3


@pytest.mark.parametrize("machine", MACHINES)
def test_normal_sound_has_its_harmonics(machine: str) -> None:
    """The strongest tonal peak is a harmonic of the shaft frequency given by the speed
    attribute."""
    attrs = {
        "fan": {"speed": 1500, "load": 60, "bg": "pink"},
        "gearbox": {"speed": 1200, "load": 50, "bg": "pink"},
        "pump": {"speed": 1500, "load": 60, "bg": "pink"},
    }[machine]
    wave, region = toy_clip(machine, "source", seed=1, seconds=4.0, attributes=attrs)
    assert region is None
    spec = np.abs(np.fft.rfft(wave))
    freqs = np.fft.rfftfreq(len(wave), 1 / SR)
    peak = freqs[np.argmax(spec[freqs > 50]) + np.sum(freqs <= 50)]
    f_shaft = attrs["speed"] / 60
    assert peak / f_shaft == pytest.approx(round(peak / f_shaft), abs=0.05)


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_fault_lies_in_its_region_and_grows_with_severity(kind: str) -> None:
    """Normal and faulty clips from one seed share the healthy sound; their difference is the
    fault. Its energy must sit inside [t0, t1] x [f0, f1] and grow with severity."""
    normal, _ = toy_clip("fan", "source", seed=7, seconds=4.0)
    inside = []
    for severity in (1, 2, 3):
        faulty, region = toy_clip("fan", "source", kind, severity, seed=7, seconds=4.0)
        assert region is not None and (region.kind, region.severity) == (kind, severity)
        diff = faulty - normal
        total = _band_energy(diff, 0, SR / 2)
        assert total > 0
        in_band = _band_energy(diff, region.f0, region.f1, region.t0, region.t1)
        assert in_band / total > 0.8, (kind, severity, in_band / total)
        outside_time = np.r_[diff[: int(region.t0 * SR) - 800], diff[int(region.t1 * SR) + 800 :]]
        assert np.sum(outside_time.astype(np.float64) ** 2) < 0.02 * np.sum(
            diff.astype(np.float64) ** 2
        )
        inside.append(in_band)
    assert (
        inside[0] < inside[1] < inside[2] or kind == "drift"
    )  # drift grows in detuning, not energy


def test_drift_moves_the_tone_further_with_severity() -> None:
    ends = []
    for severity in (1, 2, 3):
        _, region = toy_clip("gearbox", "source", "drift", severity, seed=2, seconds=4.0)
        ends.append(region.f1)
    assert ends[0] < ends[1] < ends[2]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="unknown toy machine"):
        toy_clip("toaster", "source")
    with pytest.raises(ValueError, match="domain"):
        toy_clip("fan", "elsewhere")
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        toy_clip("fan", "source", "melting", 1)
    with pytest.raises(ValueError, match="severity"):
        toy_clip("fan", "source", "clicks", 5)
