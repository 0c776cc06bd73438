"""Webhooks against a real HTTP receiver on loopback that fails its first calls and checks the
HMAC signature: every alarm arrives, signed, with its delivery id; a wrong secret is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from stethoscope.monitor.notify import outbox
from stethoscope.monitor.notify.webhook import signature

from .conftest import SECRET, Receiver, attach, raise_and_clear, wait_for


def hook_file(url: str, extra: str = "") -> str:
    return (
        f"notify:\n  webhooks: [{{url: '{url}', secret_env: HOOK_SECRET, retry_max_s: 1{extra}}}]\n"
    )


def test_alarms_arrive_signed_after_the_receiver_s_failures(
    monitor, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    notifier = attach(monitor, tmp_path, hook_file(receiver.url))
    raise_and_clear(monitor, times=2)
    bodies = wait_for(
        lambda: len(receiver.bodies()) >= 4 and receiver.bodies(), what="4 alarm webhooks"
    )
    assert (
        receiver.calls >= 2 + 4 and receiver.refused == 0
    )  # the first two calls were answered 500
    assert all(
        b["kind"] == "alarm" and b["machine"] == "fan" for b in bodies
    )  # scores are not sent by default
    alarms = monitor.store.alarms(
        machine="fan"
    )  # webhooks are not ordered: a retried message may come later
    assert sorted((b["alarm_id"], b["state"]) for b in bodies) == sorted(
        (a["id"], state) for a in alarms for state in ("raised", "cleared")
    )
    headers = [h for h, _ in receiver.accepted]
    assert [h["X-Stethoscope-Delivery"] for h in headers] == [b["delivery_id"] for b in bodies]
    assert all(h["Content-Type"] == "application/json" for h in headers)
    wait_for(lambda: notifier.backlog()["webhook:1"]["pending"] == 0, what="an empty outbox")
    rows = outbox.messages(monitor.store)
    assert all(r["delivered_at"] is not None for r in rows) and rows[0]["attempts"] >= 1
    assert rows[0]["last_error"] == "HTTP 500"


def test_scores_go_out_when_asked_for(
    monitor, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    receiver.fail_first = 0
    attach(monitor, tmp_path, hook_file(receiver.url, ", events: [score]"))
    event = monitor.record("fan", 1.5, 0, source="mic-1")
    body = wait_for(lambda: receiver.bodies(), what="a score webhook")[0]
    assert body["kind"] == "score" and body["event_id"] == event.id and body["source"] == "mic-1"
    assert body["score"] == pytest.approx(1.5, rel=1e-9, abs=1e-12) and body["anomaly"] is False


def test_a_wrong_secret_is_refused_and_retried(
    monitor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = Receiver(secret="another-secret-entirely")
    try:
        monkeypatch.setenv("HOOK_SECRET", SECRET)
        notifier = attach(monitor, tmp_path, hook_file(wrong.url))
        raise_and_clear(monitor)
        wait_for(lambda: wrong.refused >= 2, what="two refused tries")
        assert wrong.bodies() == [] and notifier.backlog()["webhook:1"]["pending"] == 2
        assert {r["last_error"] for r in outbox.messages(monitor.store)} == {"HTTP 401"}
    finally:
        wrong.close()


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert signature("k", "1700000000", b"{}") == f"sha256={expected}"
