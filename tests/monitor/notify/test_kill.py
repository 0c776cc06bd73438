"""No alarm message is lost: a real ``serve`` (``--notify`` to MQTT) raises and clears alarms
while the broker is down, is killed with SIGKILL, restarts (broker still down) and raises more;
when the broker comes up, every alarm the store holds arrives at a subscriber, each message
de-duplicable by its ``delivery_id``; the broker then publishes the last will when the restarted
service is killed too."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import pytest

from ..conftest import AUDIO, Server, fan_clip, wav_bytes
from .conftest import Broker, Subscriber, wait_for

CYCLES_BEFORE, CYCLES_AFTER = 3, 1


@pytest.fixture(scope="module")
def flip_models(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, bytes, bytes]:
    """MODELS/flip: the fan model with its threshold between the scores of a loud noise clip and
    a fan clip, and the two clips as WAV bytes, the one scored higher (anomalous) first."""
    from stethoscope.engine import RunContext
    from stethoscope.systems.base import load_system

    noise = np.clip(np.random.default_rng(0).normal(0, 0.5, 16_000), -1, 1).astype(np.float32)
    clips = [noise, fan_clip(1)]
    scores = load_system(models_dir / "fan").score_waveforms(
        clips, 16_000, RunContext(progress=False, threads=1)
    )
    high, low = np.argsort(-scores)
    assert scores[high] > 1.5 * scores[low] > 0, scores
    out = tmp_path_factory.mktemp("flip-models")
    shutil.copytree(models_dir / "fan", out / "flip")
    config = json.loads((out / "flip" / "config.json").read_text())
    config["threshold"] = float(np.sqrt(scores[high] * scores[low]))
    (out / "flip" / "config.json").write_text(json.dumps(config))
    return out, wav_bytes(clips[high]), wav_bytes(clips[low])


def cycle(server: Server, loud: bytes, quiet: bytes) -> None:
    """Raise and clear the alarm of ``flip`` once (rule 1 of 1)."""
    for clip, anomalous in ((loud, 1), (quiet, 0)):
        answer = httpx.post(
            f"{server.url}/score",
            params={"machine": "flip"},
            content=clip,
            headers=AUDIO,
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["decision"] == anomalous, answer.text


def pending(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM notify_outbox WHERE delivered_at IS NULL"
        ).fetchone()[0]


def test_kill_9_while_the_broker_is_down_loses_no_alarm(
    flip_models: tuple[Path, bytes, bytes], tmp_path: Path
) -> None:
    models, loud, quiet = flip_models
    broker = Broker(tmp_path, persist=True).start()
    sub = Subscriber(
        broker.port, "plant/#", client_id="maintenance-historian"
    )  # a persistent session
    sub.close()
    broker.stop()  # the broker is down from here on; it keeps the subscriber's session
    notify = tmp_path / "notify.yaml"
    notify.write_text(
        f"notify:\n  mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: plant, "
        f"events: [alarm], retry_max_s: 1}}\n"
    )
    db, extra = tmp_path / "events.db", ["--notify", str(notify), "--alarm", "1/1"]
    first = Server(models, db, tmp_path / "serve1.log", extra).start()
    try:
        for _ in range(CYCLES_BEFORE):
            cycle(first, loud, quiet)
        assert (
            httpx.get(f"{first.url}/health").json()["notify"]["mqtt"]["pending"]
            == 2 * CYCLES_BEFORE
        )
    finally:
        first.kill()
    assert pending(db) == 2 * CYCLES_BEFORE  # committed with their scores, before any delivery

    second = Server(models, db, tmp_path / "serve2.log", extra).start()
    try:
        for _ in range(CYCLES_AFTER):
            cycle(second, loud, quiet)
        total = 2 * (CYCLES_BEFORE + CYCLES_AFTER)
        assert pending(db) == total
        broker.start()
        sub = Subscriber(broker.port, "plant/#", client_id="maintenance-historian")
        wait_for(lambda: pending(db) == 0, timeout=60, what="the outbox to drain")
        got = wait_for(
            lambda: len(sub.on("flip/alarm")) >= total and sub.on("flip/alarm"),
            timeout=30,
            what=f"{total} alarm messages",
        )
        unique = {body["delivery_id"]: body for body, _ in got}  # de-duplicated by id
        assert len(unique) == total
        stored = httpx.get(f"{second.url}/alarms", params={"machine": "flip", "limit": 100}).json()
        assert len(stored) == CYCLES_BEFORE + CYCLES_AFTER
        expected = {(a["id"], "raised") for a in stored} | {(a["id"], "cleared") for a in stored}
        assert {(b["alarm_id"], b["state"]) for b in unique.values()} == expected
        health = httpx.get(f"{second.url}/health").json()["notify"]["mqtt"]
        assert health["pending"] == 0 and health["oldest_s"] is None
        metrics = httpx.get(f"{second.url}/metrics").text
        assert 'stethoscope_notify_pending{channel="mqtt"} 0.0' in metrics
        assert f'stethoscope_notify_delivered_total{{channel="mqtt"}} {float(total)}' in metrics
        wait_for(lambda: ("online", False) in sub.on("plant/status"), what="the online status")
    finally:
        second.kill()  # kill -9 while connected: the broker publishes the last will
    try:
        wait_for(
            lambda: ("offline", False) in sub.on("plant/status"), what="the last will (offline)"
        )
    finally:
        sub.close()
        broker.stop()
