"""The watcher on hostile input and faults: a poison file (score not finite), a file over the
size cap, a 2-hour FLAC bomb, symbolic links in and out of the folder, and an event store that
fails for a while. Every such file is marked skipped with its reason, the good files beside
them are all scored, and the watcher keeps running."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from stethoscope.engine import RunContext
from stethoscope.monitor.app import create_app
from stethoscope.monitor.service import Monitor
from stethoscope.monitor.watch import FolderWatcher

from .conftest import AUDIO, TOKEN, constant_flac, fan_clip, poison_wav, wav_bytes
from .test_watch import drop, marks, wait_for


def test_poison_bombs_and_links_are_skipped_while_good_files_are_scored(
    monitor: Monitor, tmp_path: Path
) -> None:
    folder, outside = tmp_path / "in", tmp_path / "outside"
    good = [drop(folder / "fan" / f"good{i}.wav", wav_bytes(fan_clip(30 + i))) for i in range(3)]
    drop(folder / "fan" / "poison.wav", poison_wav(1))
    drop(folder / "fan" / "bomb.flac", constant_flac(2 * 3600))  # 2 h: over --max-seconds 600
    drop(
        folder / "fan" / "big.wav", wav_bytes(fan_clip(40, seconds=40.0))
    )  # 1.3 MB: over --max-file-mb 1
    secret = drop(outside / "secret.wav", wav_bytes(fan_clip(41)))
    os.symlink(secret, folder / "fan" / "link_out.wav")  # points outside the folder
    os.symlink(good[0], folder / "fan" / "link_in.wav")  # a link, even to a file inside
    os.symlink(outside, folder / "linked_dir")  # a linked folder: not entered
    warned: list[str] = []
    watcher = FolderWatcher(
        monitor, folder, settle=0.2, poll=0.1, max_file_mb=1.0, warn=warned.append
    )
    stop = threading.Event()
    runner = threading.Thread(target=watcher.run, args=(stop,))
    runner.start()
    try:
        wait_for(
            lambda: len(marks(monitor)) == 8 or not runner.is_alive(),
            "every file marked",
            timeout=300,
        )
        assert runner.is_alive(), "the watcher died"
        drop(
            folder / "fan" / "after.wav", wav_bytes(fan_clip(42))
        )  # the watcher is still alive after them
        wait_for(
            lambda: len(marks(monitor)) == 9, "a good file dropped after the poison", timeout=300
        )
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(timeout=60)
    done = {m["path"]: m for m in marks(monitor)}
    scored = sorted(k for k, m in done.items() if m["score_id"] is not None)
    assert scored == ["fan/after.wav", "fan/good0.wav", "fan/good1.wav", "fan/good2.wav"]
    reasons = {k: m["skip_reason"] for k, m in done.items() if m["score_id"] is None}
    assert sorted(reasons) == [
        "fan/big.wav",
        "fan/bomb.flac",
        "fan/link_in.wav",
        "fan/link_out.wav",
        "fan/poison.wav",
    ]
    assert "not finite" in reasons["fan/poison.wav"]
    assert "7200 s" in reasons["fan/bomb.flac"] and "--max-seconds 600" in reasons["fan/bomb.flac"]
    assert "--max-file-mb 1" in reasons["fan/big.wav"]
    assert (
        "symbolic link" in reasons["fan/link_out.wav"]
        and "symbolic link" in reasons["fan/link_in.wav"]
    )
    events = monitor.store.events(limit=100)
    assert len(events) == 4 and all(
        e["score"] == e["score"] for e in events
    )  # no NaN, nothing of the skipped
    assert "secret.wav" not in str(events) and not any("linked_dir" in k for k in done)
    assert any("poison.wav" in w and "not finite" in w for w in warned)

    restarted = FolderWatcher(
        monitor, folder, settle=0, max_file_mb=1.0
    )  # a restart tries none of them again
    restarted.scan()
    assert restarted.step() == 0 and len(marks(monitor)) == 9


def test_a_failing_store_is_retried_with_backoff_and_health_is_degraded(
    models_dir: Path, tmp_path: Path
) -> None:
    db = tmp_path / "events.db"
    monitor = Monitor.open(models_dir, str(db), RunContext(progress=False, threads=1))
    try:
        folder = tmp_path / "in"
        drop(folder / "fan" / "a.wav", wav_bytes(fan_clip(50)))
        warned: list[str] = []
        watcher = FolderWatcher(
            monitor, folder, settle=0, warn=warned.append, retry_first=0.2, retry_max=0.4
        )
        watcher.scan()
        with TestClient(create_app(monitor, TOKEN)) as client:
            with sqlite3.connect(
                db
            ) as raw:  # a real fault: every new score is refused by the database
                raw.execute(
                    "CREATE TRIGGER broken BEFORE INSERT ON scores BEGIN "
                    "SELECT RAISE(ABORT, 'disk on fire'); END"
                )
            assert watcher.step() == 1 and marks(monitor) == []
            assert monitor.health.degraded and any("event store failed" in w for w in warned)
            assert watcher.step() == 0  # backing off: not tried again at once
            health = client.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            assert str(tmp_path) not in health.text and TOKEN not in health.text
            answer = client.post(
                "/score", params={"machine": "fan"}, content=wav_bytes(fan_clip(51)), headers=AUDIO
            )
            assert (
                answer.status_code == 503
                and str(tmp_path) not in answer.text
                and "disk" not in answer.text
            )
            with sqlite3.connect(db) as raw:  # the store is back
                raw.execute("DROP TRIGGER broken")
            wait_for(lambda: watcher.step() == 1, "the retry after the backoff", timeout=30)
            assert not monitor.health.degraded
            (mark,) = marks(monitor)
            assert mark["path"] == "fan/a.wav" and mark["score_id"] is not None
            assert client.get("/health").json()["status"] == "ok"
    finally:
        monitor.close()


def test_a_poison_clip_posted_gets_4xx_and_the_service_stays_up(monitor: Monitor) -> None:
    with TestClient(create_app(monitor, TOKEN)) as client:
        answer = client.post(
            "/score", params={"machine": "fan"}, content=poison_wav(2), headers=AUDIO
        )
        assert answer.status_code == 422 and "not finite" in answer.json()["detail"]
        assert "request body" in answer.json()["detail"] and client.get("/events").json() == []
        bomb = client.post(
            "/score", params={"machine": "fan"}, content=constant_flac(2 * 3600), headers=AUDIO
        )
        assert bomb.status_code == 422 and "--max-seconds 600" in bomb.json()["detail"]
        fine = client.post(
            "/score", params={"machine": "fan"}, content=wav_bytes(fan_clip(3)), headers=AUDIO
        )
        assert fine.status_code == 200 and client.get("/health").json()["status"] == "ok"


def test_a_real_serve_answers_4xx_to_a_poison_clip_and_keeps_serving(server) -> None:
    answer = httpx.post(
        f"{server.url}/score",
        params={"machine": "fan"},
        content=poison_wav(4),
        headers=AUDIO,
        timeout=120,
    )
    assert answer.status_code == 422 and "not finite" in answer.text
    assert httpx.get(f"{server.url}/health", timeout=30).json()["status"] == "ok"
    fine = httpx.post(
        f"{server.url}/score",
        params={"machine": "fan"},
        content=wav_bytes(fan_clip(5)),
        headers=AUDIO,
        timeout=120,
    )
    assert fine.status_code == 200 and server.proc.poll() is None
