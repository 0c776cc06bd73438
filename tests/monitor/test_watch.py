"""`stethoscope watch DIR`: every audio file dropped into a folder is scored once and only once,
even when the watcher is killed with SIGKILL in the middle of a batch and restarted; growing
files wait until they settle; bad audio and files of no served machine are marked skipped."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stethoscope.cli import main
from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.monitor.service import Monitor
from stethoscope.monitor.watch import FolderWatcher, is_watched_name
from stethoscope.systems import load_system

from .conftest import SRC, fan_clip, wav_bytes

CTX = RunContext(progress=False, threads=1)


def drop(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def wait_for(condition, what: str, timeout: float = 900.0) -> None:
    """Poll ``condition`` until true; a test failure naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


def marks(monitor: Monitor) -> list[dict]:
    return monitor.store.watched_files(limit=10_000)


def test_names_that_are_watched() -> None:
    assert is_watched_name("clip.wav") and is_watched_name("CLIP.FLAC")
    for name in (
        "clip.wav.part",
        "clip.wav.tmp",
        ".clip.wav",
        "clip.wav~",
        "notes.txt",
        "clip.crdownload",
    ):
        assert not is_watched_name(name), name


def test_files_dropped_while_watching_are_scored_once(
    monitor: Monitor, models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    drop(folder / "fan" / "before.wav", wav_bytes(fan_clip(1)))  # there before the start: caught up
    watcher = FolderWatcher(monitor, folder, settle=0.3)
    stop = threading.Event()
    runner = threading.Thread(target=watcher.run, args=(stop,))
    runner.start()
    try:
        wait_for(lambda: len(marks(monitor)) == 1, "the catch-up of before.wav")
        drop(folder / "fan" / "a.wav", wav_bytes(fan_clip(2)))
        drop(folder / "gearbox" / "b.flac", wav_bytes(fan_clip(3), fmt="FLAC"))
        drop(folder / "fan" / ".hidden.wav", wav_bytes(fan_clip(4)))
        drop(folder / "fan" / "c.wav.part", wav_bytes(fan_clip(5)))  # a recorder still writing it
        drop(folder / "fan" / "notes.txt", b"not audio")
        wait_for(lambda: len(marks(monitor)) == 3, "a.wav and b.flac")
        os.rename(
            folder / "fan" / "c.wav.part", folder / "fan" / "c.wav"
        )  # finished: renamed into place
        wait_for(lambda: len(marks(monitor)) == 4, "c.wav after its rename")
        time.sleep(1.0)  # more rounds of the loop: nothing may be scored twice
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
    done = {m["path"]: m for m in marks(monitor)}
    assert sorted(done) == ["fan/a.wav", "fan/before.wav", "fan/c.wav", "gearbox/b.flac"]
    events = {e["id"]: e for e in monitor.store.events(limit=1000)}
    assert sorted(events) == sorted(
        m["score_id"] for m in done.values()
    )  # one score per file, no other
    for key, mark in done.items():
        machine = key.split("/")[0]
        assert mark["machine"] == machine and mark["skip_reason"] is None
        path = folder / key
        assert (mark["size"], mark["mtime_ns"]) == (path.stat().st_size, path.stat().st_mtime_ns)
        event = events[mark["score_id"]]
        assert (event["machine"], event["source"]) == (machine, key)
        expected = load_system(models_dir / machine).score([Clip(path=path, machine=machine)], CTX)[
            0
        ]
        assert event["score"] == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert watcher.stats.scored == 4 and watcher.stats.skipped == 0


def test_a_growing_file_is_scored_only_once_settled(monitor: Monitor, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    data = wav_bytes(fan_clip(6, seconds=2.0))
    pieces = [data[start : start + len(data) // 5] for start in range(0, len(data), len(data) // 5)]
    growing = drop(folder / "fan" / "growing.wav", pieces[0])  # a recorder writing, with pauses
    watcher = FolderWatcher(monitor, folder, settle=0.2)
    watcher.scan()
    for piece in pieces[1:]:
        time.sleep(0.3)  # longer than --settle, but the file changed since the last look
        with open(growing, "ab") as out:
            out.write(piece)
        assert watcher.step() == 0 and marks(monitor) == []
    time.sleep(0.3)  # now unchanged for --settle seconds
    assert watcher.step() == 1
    (mark,) = marks(
        monitor
    )  # one mark, for the whole file: no truncated piece was scored or skipped
    assert (
        mark["size"] == len(data) and mark["skip_reason"] is None and mark["score_id"] is not None
    )


def test_bad_audio_and_files_of_no_machine_are_skipped(
    monitor: Monitor, models_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    good = drop(folder / "fan" / "good.wav", wav_bytes(fan_clip(7)))
    drop(folder / "fan" / "broken.wav", b"RIFF....WAVEjunk")
    drop(folder / "fan" / "clipped.wav", wav_bytes(np.clip(fan_clip(8) * 100, -1, 1)))
    drop(folder / "pump" / "p.wav", wav_bytes(fan_clip(9)))  # no model for pump
    drop(folder / "top.wav", wav_bytes(fan_clip(10)))  # no machine folder
    drop(folder / "fan" / "deep" / "d.wav", wav_bytes(fan_clip(11)))  # deeper than DIR/<machine>/
    warned: list[str] = []
    watcher = FolderWatcher(monitor, folder, settle=0, warn=warned.append)
    watcher.scan()
    assert watcher.step() == 5
    done = {m["path"]: m for m in marks(monitor)}
    assert sorted(done) == [
        "fan/broken.wav",
        "fan/clipped.wav",
        "fan/good.wav",
        "pump/p.wav",
        "top.wav",
    ]
    assert "not a readable audio file" in done["fan/broken.wav"]["skip_reason"]
    assert done["fan/broken.wav"]["score_id"] is None and done["fan/broken.wav"]["machine"] == "fan"
    assert "no served model for machine folder 'pump'" in done["pump/p.wav"]["skip_reason"]
    assert "--machine" in done["top.wav"]["skip_reason"] and done["top.wav"]["machine"] is None
    assert (
        done["fan/clipped.wav"]["score_id"] is not None
    )  # suspicious: scored with a warning by default
    assert any("clipped" in w for w in warned) and any(
        "pump" in w and "skipped" in w for w in warned
    )
    assert len(monitor.store.events(limit=100)) == 2

    restarted = FolderWatcher(monitor, folder, settle=0)  # a restart: everything is done already
    restarted.scan()
    assert restarted.step() == 0 and len(marks(monitor)) == 5

    good.write_bytes(
        wav_bytes(fan_clip(12, seconds=1.5))
    )  # rewritten under its name: a new recording
    restarted.scan()
    assert restarted.step() == 1
    assert [m["path"] for m in marks(monitor)].count("fan/good.wav") == 2

    strict = FolderWatcher(monitor, folder, recursive=True, settle=0, on_bad_audio="skip")
    strict.scan()  # --recursive: fan/deep/d.wav now; its machine is still fan
    assert strict.step() == 1 and marks(monitor)[0]["path"] == "fan/deep/d.wav"
    drop(folder / "fan" / "clipped2.wav", wav_bytes(np.clip(fan_clip(13) * 100, -1, 1)))
    strict.scan()
    assert (
        strict.step() == 1 and "clipped" in marks(monitor)[0]["skip_reason"]
    )  # skip: suspicious left out


def test_two_watchers_on_one_folder_score_each_file_once(monitor: Monitor, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for i in range(4):
        drop(folder / "fan" / f"{i}.wav", wav_bytes(fan_clip(20 + i)))
    first, second = (
        FolderWatcher(monitor, folder, settle=0),
        FolderWatcher(monitor, folder, settle=0),
    )
    first.scan()
    second.scan()  # both saw the files before either scored them
    assert first.step() == 4 and second.step() == 4
    assert (first.stats.scored, second.stats.scored, second.stats.already) == (4, 0, 4)
    assert (
        len(monitor.store.events(limit=100)) == 4
    )  # the second's scores were rolled back with its marks


def test_kill_9_mid_batch_then_restart_scores_every_file_once(
    models_dir: Path, tmp_path: Path
) -> None:
    folder, db, n = tmp_path / "in", tmp_path / "events.db", 120
    for i in range(n):
        drop(folder / "fan" / f"clip{i:03d}.wav", wav_bytes(fan_clip(100 + i % 10)))
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    command = [
        sys.executable,
        "-m",
        "stethoscope.cli",
        "watch",
        str(folder),
        "--models",
        str(models_dir),
        "--db",
        str(db),
        "--settle",
        "0",
        "--poll",
        "0.2",
        "--quiet",
    ]

    def count(sql: str) -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(db, timeout=30) as raw:
            try:
                return raw.execute(sql).fetchone()[0]
            except sqlite3.OperationalError:  # the table is not created yet
                return 0

    def done() -> int:
        return count("SELECT COUNT(*) FROM watched_files")

    with open(tmp_path / "watch.log", "wb") as log:
        first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: done() >= 10 or first.poll() is not None, "the first scores")
            first.send_signal(signal.SIGKILL)
        finally:
            first.kill()
            first.wait(timeout=30)
        at_kill = done()
        assert 10 <= at_kill < n, (
            f"the kill did not land in the middle of the batch ({at_kill} of {n} done)"
        )

        second = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: done() >= n or second.poll() is not None, "the restart's catch-up")
            second.send_signal(signal.SIGTERM)  # a clean stop
            assert second.wait(timeout=600) == 0, (tmp_path / "watch.log").read_text()
        finally:
            second.kill()
    with sqlite3.connect(db) as raw:
        rows = raw.execute("SELECT path, score_id, skip_reason FROM watched_files").fetchall()
        scores = [r[0] for r in raw.execute("SELECT id FROM scores")]
    paths = [r[0] for r in rows]
    assert sorted(paths) == [
        f"fan/clip{i:03d}.wav" for i in range(n)
    ]  # each once: none missing, none twice
    assert all(r[2] is None for r in rows)
    assert sorted(r[1] for r in rows) == sorted(
        scores
    )  # every score has its mark: none scored twice


def test_cli_refuses_bad_arguments(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = str(tmp_path / "e.db")
    cases = [
        (["watch", "--models", str(models_dir), "--db", db], "give a folder to watch"),
        (
            ["watch", str(tmp_path / "nope"), "--models", str(models_dir), "--db", db],
            "no such folder",
        ),
        (
            ["watch", str(tmp_path), "--models", str(models_dir), "--db", db, "--machine", "pump"],
            "no model for machine 'pump'",
        ),
        (
            ["watch", str(tmp_path), "--models", str(models_dir), "--db", db, "--rate", "48000"],
            "are for --mic",
        ),
        (
            ["watch", str(tmp_path), "--models", str(models_dir), "--db", db, "--settle", "-1"],
            "--settle >= 0",
        ),
        (
            ["watch", str(tmp_path), "--models", str(models_dir), "--db", db, "--alarm", "9/5"],
            "alarm rule",
        ),
        (
            ["watch", str(tmp_path), "--models", str(models_dir), "--db", db, "--max-file-mb", "0"],
            "--max-file-mb must be a positive number",
        ),
        (
            [
                "watch",
                str(tmp_path),
                "--models",
                str(models_dir),
                "--db",
                db,
                "--max-seconds",
                "-5",
            ],
            "--max-seconds must be a positive number",
        ),
        (
            [
                "watch",
                str(tmp_path),
                "--models",
                str(models_dir),
                "--db",
                db,
                "--keep-audio-mb",
                "-1",
            ],
            "--keep-audio-mb must be >= 0",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_each_file_is_opened_once(monitor: Monitor, tmp_path: Path) -> None:
    """The watcher reads a file's bytes once (capped, without following a link); the header
    check, the decode and the kept audio all come from those bytes (issue 23)."""
    from tests.opens import counting_opens

    folder = tmp_path / "in"
    files = [
        drop(folder / "fan" / "a.wav", wav_bytes(fan_clip(60))),
        drop(folder / "fan" / "b.flac", wav_bytes(fan_clip(61), fmt="FLAC")),
        drop(folder / "fan" / "garbage.wav", b"RIFF....WAVEjunk" * 100),
    ]
    watcher = FolderWatcher(monitor, folder, settle=0)
    with counting_opens() as opens:
        watcher.scan()
        assert watcher.step() == 3
    assert [opens.of(f) for f in files] == [1, 1, 1]
    done = {m["path"]: m for m in marks(monitor)}
    assert done["fan/a.wav"]["score_id"] and done["fan/b.flac"]["score_id"]
    assert "truncated WAV" in done["fan/garbage.wav"]["skip_reason"]
