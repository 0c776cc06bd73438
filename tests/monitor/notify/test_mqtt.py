"""MQTT against a real Mosquitto on loopback: scores and retained alarm states on their topics
(QoS 1), the service's status with its last will, a password broker, a TLS broker, and a broker
that is down: messages wait in the outbox and all arrive when it comes up."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from stethoscope.monitor.notify import outbox

from .conftest import Broker, Subscriber, attach, raise_and_clear, wait_for


def mqtt_file(port: int, extra: str = "") -> str:
    return (
        f"notify:\n  mqtt: {{host: 127.0.0.1, port: {port}, topic_prefix: plant/hall1, "
        f"retry_max_s: 1"
        f"{extra}}}\n"
    )


def test_scores_alarms_and_status_reach_the_broker(monitor, broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port, "plant/hall1/#")
    try:
        notifier = attach(monitor, tmp_path, mqtt_file(broker.port))
        wait_for(lambda: sub.on("/status"), what="the online status")
        raise_and_clear(monitor, times=2)
        alarms = wait_for(
            lambda: len(sub.on("fan/alarm")) >= 4 and sub.on("fan/alarm"), what="4 alarm messages"
        )
        scores = wait_for(
            lambda: len(sub.on("fan/score")) >= 4 and sub.on("fan/score"), what="4 score messages"
        )
        assert [body["state"] for body, _ in alarms] == ["raised", "cleared", "raised", "cleared"]
        assert [body["score"] for body, _ in scores] == [9.0, 0.1, 9.0, 0.1]
        assert {b["event_id"] for b, _ in scores} == {
            e["id"] for e in monitor.store.events(machine="fan")
        }
        assert sub.on("/status")[0][0] == "online"
        wait_for(lambda: notifier.backlog()["mqtt"]["pending"] == 0, what="an empty outbox")
    finally:
        sub.close()
    late = Subscriber(
        broker.port, "plant/hall1/#"
    )  # a subscriber that comes later gets the retained states
    try:
        retained = wait_for(lambda: late.on("fan/alarm"), what="the retained alarm state")
        assert retained[0][0]["state"] == "cleared" and retained[0][1] is True
        assert (
            late.on("/status") == [("online", True)] and late.on("fan/score") == []
        )  # scores are not retained
        monitor.notifier.close()  # a clean stop says offline
        monitor.notifier = None
        wait_for(lambda: ("offline", False) in late.on("/status"), what="the offline status")
    finally:
        late.close()


def test_a_broker_that_is_down_gets_everything_when_it_comes_up(monitor, tmp_path: Path) -> None:
    broker = Broker(tmp_path)  # its port is chosen, nothing listens yet
    notifier = attach(monitor, tmp_path, mqtt_file(broker.port, ", events: [alarm]"))
    raise_and_clear(monitor, times=3)
    assert notifier.backlog()["mqtt"]["pending"] == 6
    broker.start()
    try:
        sub = Subscriber(broker.port, "plant/hall1/fan/alarm")
        wait_for(
            lambda: notifier.backlog()["mqtt"]["pending"] == 0,
            timeout=60,
            what="the outbox to drain",
        )
        got = wait_for(lambda: sub.on("fan/alarm"), what="the retained alarm")
        assert got[-1][0]["state"] == "cleared"
        delivered = [r for r in outbox.messages(monitor.store) if r["kind"] == "alarm"]
        assert len(delivered) == 6 and all(r["delivered_at"] is not None for r in delivered)
        sub.close()
    finally:
        broker.stop()


@pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd is not installed"
)
def test_a_password_broker(monitor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "scorer", "right-password"],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    broker = Broker(tmp_path, password_file=passwords).start()
    monkeypatch.setenv("MQ_PASSWORD", "wrong-password")
    try:
        said: list[str] = []
        notifier = attach(
            monitor,
            tmp_path,
            mqtt_file(broker.port, ", username: scorer, password_env: MQ_PASSWORD"),
            said,
        )
        raise_and_clear(monitor)
        wait_for(lambda: any("refused" in s for s in said), what="the broker's refusal")
        assert not notifier.channels[0].ready() and notifier.backlog()["mqtt"]["pending"] == 4
        assert not any("wrong-password" in s for s in said)
        monitor.notifier.close()
        monkeypatch.setenv("MQ_PASSWORD", "right-password")
        notifier = attach(
            monitor,
            tmp_path,
            mqtt_file(broker.port, ", username: scorer, password_env: MQ_PASSWORD"),
        )
        wait_for(
            lambda: notifier.backlog()["mqtt"]["pending"] == 0,
            what="delivery with the right password",
        )
    finally:
        broker.stop()


def test_a_tls_broker(monitor, tmp_path: Path, self_signed: tuple[Path, Path]) -> None:
    cert, key = self_signed
    broker = Broker(tmp_path, tls=(cert, key)).start()
    try:
        sub = Subscriber(broker.port, "plant/hall1/#", ca_certs=str(cert))
        notifier = attach(monitor, tmp_path, mqtt_file(broker.port, f", tls: true, ca: '{cert}'"))
        raise_and_clear(monitor)
        wait_for(lambda: len(sub.on("fan/alarm")) == 2, what="alarms over TLS")
        wait_for(lambda: notifier.backlog()["mqtt"]["pending"] == 0, what="an empty outbox")
        sub.close()
    finally:
        broker.stop()
