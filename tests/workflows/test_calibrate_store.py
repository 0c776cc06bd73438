"""``calibrate --from-store``: a machine's threshold refitted on the clips operators marked
normal in a real event store (scored and kept by the monitor's core, labelled as the API does),
end to end through the CLI; and the clear errors when there is too little to fit on."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.cli import main
from stethoscope.data import toy_clip
from stethoscope.engine import RunContext
from stethoscope.systems import load_system
from stethoscope.systems.threshold import gamma_threshold

pytest.importorskip(
    "sqlalchemy", reason="the serve extra is not installed (pip install 'stethoscope[serve]')"
)

from stethoscope.monitor.service import Monitor

CTX = RunContext(progress=False, threads=1)


def _store(models: Path, db: Path, labels: dict[int, str], keep_audio: int = 1000) -> list[int]:
    """Score one fan clip per seed of ``labels`` into ``db`` and label it; the event ids."""
    monitor = Monitor.open(models, str(db), CTX, keep_audio=keep_audio)
    try:
        ids = []
        for seed, label in labels.items():
            event = monitor.score_wave(
                "fan", toy_clip("fan", seed=seed, seconds=2.0)[0], 16_000, f"mic{seed}"
            )
            monitor.operators.label(event.id, label, "alice", "checked on site")
            ids.append(event.id)
        return ids
    finally:
        monitor.close()


def test_the_threshold_is_refitted_on_the_clips_marked_normal(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "events.db"
    ids = _store(models, db, {11: "normal", 12: "normal", 13: "fault", 14: "normal", 15: "normal"})
    normal = [ids[i] for i in (0, 1, 3, 4)]
    model = tmp_path / "fan"
    shutil.copytree(models / "fan", model)
    monitor = Monitor.open(models, str(db), CTX)
    waves = [
        sf.read(io.BytesIO(monitor.store.clip_audio(i)), dtype="float32")[0] for i in normal
    ]  # as kept
    stored = monitor.store.events("fan", limit=100)
    monitor.close()
    system = load_system(model)
    expected = gamma_threshold(
        np.asarray(system.score_waveforms(waves, 16_000, CTX)), system.threshold_percentile
    )

    assert (
        main(
            [
                "calibrate",
                "--from-store",
                str(db),
                "--machine",
                "fan",
                "--model",
                str(model),
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    said = capsys.readouterr().out
    assert (
        "of 4 clips marked normal in the store" in said and "false alarms on these 4 clips" in said
    )
    saved = json.loads((model / "config.json").read_text())
    assert saved["threshold"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    record = saved["run"]["calibrations"][-1]
    assert (
        record["event_ids"] == normal
        and record["from_store"] == str(db)
        and record["machine"] == "fan"
    )
    assert load_system(model).threshold_ == pytest.approx(expected, rel=1e-6, abs=1e-9)

    # without --model: a proposal from the stored scores, nothing written
    assert main(["calibrate", "--from-store", str(db), "--machine", "fan"]) == 0
    scores = np.array(
        [e["score"] for e in sorted(stored, key=lambda e: e["id"]) if e["id"] in normal]
    )
    said = capsys.readouterr().out
    assert (
        f"proposed threshold: {gamma_threshold(scores, 0.9):.6g}" in said
        and "nothing written" in said
    )


def test_too_few_labelled_clips_or_no_kept_audio_are_clear_errors(
    models: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    model = tmp_path / "fan"
    shutil.copytree(models / "fan", model)
    before = (model / "config.json").read_text()
    few = tmp_path / "few.db"
    _store(models, few, {21: "normal", 22: "normal", 23: "fault"})
    assert (
        main(["calibrate", "--from-store", str(few), "--machine", "fan", "--model", str(model)])
        == 2
    )
    said = capsys.readouterr().err
    assert (
        "2 event(s) of machine 'fan' labelled normal, 2 with kept audio; a threshold fit needs "
        "at least 3" in said
    )
    unkept = tmp_path / "unkept.db"
    _store(models, unkept, {31: "normal", 32: "normal", 33: "normal"}, keep_audio=0)
    assert (
        main(["calibrate", "--from-store", str(unkept), "--machine", "fan", "--model", str(model)])
        == 2
    )
    assert (
        "3 event(s) of machine 'fan' labelled normal, 0 with kept audio" in capsys.readouterr().err
    )
    assert main(["calibrate", "--from-store", str(tmp_path / "none.db"), "--machine", "fan"]) == 2
    assert "none.db: no such event store file" in capsys.readouterr().err
    assert main(["calibrate", "--from-store", str(few), "--model", str(model)]) == 2
    said = capsys.readouterr().err
    assert "give --machine M" in said and "Traceback" not in said
    assert (model / "config.json").read_text() == before and not (tmp_path / "none.db").exists()
