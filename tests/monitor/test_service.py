"""The scoring core without HTTP: which models a folder serves, machine names, and that a
clip scores as the toolkit scores its file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from stethoscope.data import toy_clip
from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.errors import AudioError, CheckpointError, ConfigError
from stethoscope.monitor.service import (
    Monitor,
    UnknownMachine,
    check_machine_name,
    find_models,
    model_version,
)
from stethoscope.systems import load_system

from .conftest import fan_clip, wav_bytes

CTX = RunContext(progress=False, threads=1)


@pytest.mark.parametrize(
    "name", ["..", "../fan", "a/b", "a\\b", "", ".hidden", "fan..x", "x" * 65, "fan\n"]
)
def test_path_like_machine_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid machine name"):
        check_machine_name(name)


def test_find_models_nested_single_and_empty(models_dir: Path, tmp_path: Path) -> None:
    assert set(find_models(models_dir)) == {"alarming", "fan", "gearbox"}
    assert find_models(models_dir / "gearbox") == {
        "gearbox": models_dir / "gearbox"
    }  # named by its run record
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no trained model"):
        find_models(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no such folder"):
        find_models(tmp_path / "missing")
    shutil.copytree(models_dir / "fan", tmp_path / "bad name" / "fan two")
    with pytest.raises(CheckpointError, match="invalid machine name"):
        find_models(tmp_path / "bad name")


def test_clip_scores_like_its_file(monitor: Monitor, models_dir: Path, tmp_path: Path) -> None:
    wave = np.stack(
        [toy_clip("fan", seed=s, seconds=2.0, sample_rate=32_000)[0] for s in (3, 4)], axis=1
    )
    path = tmp_path / "clip.flac"  # stereo at 32 kHz: channel 1 is picked, resampled as files are
    path.write_bytes(wav_bytes(wave, 32_000, "FLAC"))
    event = monitor.score_clip("fan", path.read_bytes(), source="line 3", channel=1)
    system = load_system(models_dir / "fan")
    expected = system.score([Clip(path=path, machine="fan", channel=1)], CTX)[0]
    assert event.score == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert event.threshold == system.threshold_ and event.decision == int(
        event.score > system.threshold_
    )
    assert event.model_version == model_version(models_dir / "fan") and event.system == "dcase_ae"
    (stored,) = monitor.store.events("fan")
    assert (stored["id"], stored["score"], stored["source"]) == (event.id, event.score, "line 3")


def test_bad_clips_and_names(monitor: Monitor) -> None:
    with pytest.raises(AudioError, match="request body: not a readable audio file") as err:
        monitor.score_clip("fan", b"not audio at all")
    assert "--on-bad-audio" not in str(err.value)
    with pytest.raises(AudioError, match="empty"):
        monitor.score_clip("fan", b"")
    with pytest.raises(UnknownMachine, match="served: alarming, fan, gearbox"):
        monitor.score_clip("pump", wav_bytes(fan_clip(0)))
    with pytest.raises(ConfigError, match="source"):
        monitor.score_clip("fan", wav_bytes(fan_clip(0)), source="x" * 201)
    assert monitor.store.events() == []


def test_suspicious_audio_is_scored_with_a_warning(monitor: Monitor) -> None:
    loud = np.clip(fan_clip(5) * 50, -1, 1)  # clipped
    event = monitor.score_clip("fan", wav_bytes(loud))
    assert event.warnings and "clip" in " ".join(event.warnings).lower()


def test_concurrent_scoring_equals_serial(monitor: Monitor) -> None:
    from concurrent.futures import ThreadPoolExecutor

    waves = [fan_clip(seed, 2.0) for seed in range(8)]
    serial = [monitor.score_wave("fan", w, 16_000).score for w in waves]
    with ThreadPoolExecutor(4) as pool:
        events = list(pool.map(lambda w: monitor.score_wave("fan", w, 16_000), waves))
    np.testing.assert_allclose([e.score for e in events], serial, rtol=1e-6, atol=1e-9)
    assert len({e.id for e in events}) == 8 and len(monitor.store.events(limit=100)) == 16


def test_an_upload_is_checked_and_decoded_from_its_bytes(monitor: Monitor) -> None:
    """`POST /score`'s path: the body's bytes serve the header check and the decode; no file is
    written or read for them (issue 23: one read per clip; here the read is the request)."""
    from tests.opens import counting_opens

    with counting_opens() as opens:
        event = monitor.score_clip("fan", wav_bytes(fan_clip(70)), source="upload")
    assert np.isfinite(event.score)
    assert not [p for p in opens if p.lower().endswith((".wav", ".flac", ".tmp"))], dict(opens)
