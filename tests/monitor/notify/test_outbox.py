"""The outbox: rows commit with the score that made them (or not at all), are claimed with a
lease, retried with a capped backoff, pruned, and counted per channel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stethoscope.monitor.notify import outbox
from stethoscope.monitor.store import AlreadyDone, FileMark

from .conftest import SECRET, attach, raise_and_clear

HOOK = (
    "notify:\n  webhooks: [{url: 'http://127.0.0.1:9/hook', secret_env: HOOK_SECRET, "
    "events: [alarm, score]}]\n"
)


@pytest.fixture
def quiet_notifier(monitor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A notifier whose dispatchers never run: the rows stay for the test to read."""
    from stethoscope.monitor.notify import Notifier, load_notify

    monkeypatch.setenv("HOOK_SECRET", SECRET)
    (tmp_path / "n.yaml").write_text(HOOK)
    monitor.notifier = Notifier(
        load_notify(tmp_path / "n.yaml"), monitor.store, warn=lambda m: None
    )
    return monitor.notifier


def test_each_score_and_alarm_change_gets_its_rows(monitor, quiet_notifier) -> None:
    raise_and_clear(monitor)
    rows = outbox.messages(monitor.store, "webhook:1")
    assert [r["kind"] for r in rows] == ["score", "alarm", "score", "alarm"]
    bodies = [
        outbox.Message(
            r["id"],
            r["channel"],
            r["kind"],
            r["topic"],
            r["delivery_id"],
            r["payload"],
            r["attempts"],
        ).body
        for r in rows
    ]
    assert [b.get("state") for b in bodies] == [None, "raised", None, "cleared"]
    assert bodies[1]["alarm_id"] == bodies[3]["alarm_id"] and bodies[1]["machine"] == "fan"
    assert len({b["delivery_id"] for b in bodies}) == 4 and all(
        b["delivery_id"] == r["delivery_id"] for b, r in zip(bodies, rows, strict=True)
    )
    assert all(r["delivered_at"] is None and r["attempts"] == 0 for r in rows)


def test_a_muted_machine_sends_its_scores_but_raises_no_alarm_to_send(
    monitor, quiet_notifier
) -> None:
    """The mute (operator's workflow) and the outbox meet in one write: a muted machine's
    anomalous scores are stored and queued as scores, and no alarm is raised, so none is sent;
    after the mute is cancelled the next anomalous score raises and sends it."""
    monitor.operators.mute("fan", None, time.time() + 600, "bearing change", "alice")
    monitor.store.set_alarm_rule("fan", 1, 1)
    assert monitor.record("fan", 9.0, 1, source="muted").muted
    assert [r["kind"] for r in outbox.messages(monitor.store, "webhook:1")] == ["score"]
    monitor.operators.cancel_mute(monitor.muted("fan")["id"], "alice")
    monitor.record("fan", 9.0, 1, source="after")
    kinds = [r["kind"] for r in outbox.messages(monitor.store, "webhook:1")]
    assert kinds == ["score", "score", "alarm"] and len(monitor.store.alarms("fan")) == 1


def test_a_rolled_back_score_leaves_no_row(monitor, quiet_notifier, tmp_path: Path) -> None:
    mark = FileMark(str(tmp_path), "fan/a.wav", 10, 1)
    monitor.record("fan", 1.0, 0, mark=mark)
    with pytest.raises(AlreadyDone):
        monitor.record(
            "fan", 1.0, 0, mark=mark
        )  # the second mark fails: its score rolls back, and its rows
    assert len(monitor.store.events(machine="fan")) == 1
    assert len(outbox.messages(monitor.store)) == 1


def test_claims_lease_rows_and_failures_back_off(monitor, quiet_notifier) -> None:
    monitor.record("fan", 1.0, 0)
    monitor.record("fan", 2.0, 0)
    first = outbox.claim(monitor.store, "webhook:1", 10, lease_s=60)
    assert [m.body["score"] for m in first] == [1.0, 2.0]
    assert (
        outbox.claim(monitor.store, "webhook:1", 10, lease_s=60) == []
    )  # leased: no second sender
    outbox.settle(monitor.store, [first[0].id], {first[1].id: (0, "HTTP 500")}, cap=8)
    rows = {r["id"]: r for r in outbox.messages(monitor.store)}
    assert rows[first[0].id]["delivered_at"] is not None
    failed = rows[first[1].id]
    assert failed["attempts"] == 1 and failed["last_error"] == "HTTP 500"
    assert failed["next_attempt"] - time.time() == pytest.approx(1.0, abs=0.5)
    assert [outbox.backoff(n, 8) for n in range(6)] == [1, 2, 4, 8, 8, 8]
    backlog = outbox.backlog(monitor.store, ["webhook:1", "mqtt"])
    assert backlog["webhook:1"]["pending"] == 1 and backlog["mqtt"] == {
        "pending": 0,
        "oldest_s": None,
    }


def test_prune_drops_old_delivered_rows_and_surplus_scores_never_alarms(
    monitor, quiet_notifier
) -> None:
    raise_and_clear(monitor, times=3)  # 6 scores, 6 alarm messages
    assert (
        outbox.prune(monitor.store, "webhook:1", keep_delivered_s=3600, max_pending_scores=2) == 4
    )
    kinds = [r["kind"] for r in outbox.messages(monitor.store)]
    assert kinds.count("alarm") == 6 and kinds.count("score") == 2
    ids = [r["id"] for r in outbox.messages(monitor.store)]
    outbox.settle(monitor.store, ids, {}, cap=1)
    outbox.prune(monitor.store, "webhook:1", keep_delivered_s=0, max_pending_scores=2)
    time.sleep(0.01)
    outbox.prune(monitor.store, "webhook:1", keep_delivered_s=0, max_pending_scores=2)
    assert outbox.messages(monitor.store) == []


def test_a_dead_receiver_never_blocks_scoring(
    monitor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Port 9 (discard) on loopback refuses connections: the dispatcher fails in the background
    while scores are recorded at the usual pace, and every message waits in the outbox."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    notifier = attach(
        monitor,
        tmp_path,
        HOOK.replace("events: [alarm, score]", "events: [alarm, score], retry_max_s: 1"),
    )
    raise_and_clear(monitor, times=5)
    time.sleep(1.0)
    backlog = notifier.backlog()["webhook:1"]
    assert backlog["pending"] == 20 and backlog["failing"]
    assert all(r["delivered_at"] is None for r in outbox.messages(monitor.store))
    assert any(
        r["attempts"] >= 1 and "Connection" in (r["last_error"] or "")
        for r in outbox.messages(monitor.store)
    )


def test_the_outbox_migration_keeps_an_older_store(tmp_path: Path) -> None:
    from sqlalchemy import inspect, text

    from stethoscope.monitor.db import make_engine
    from stethoscope.monitor.migrations import LATEST, MIGRATIONS, migrate
    from stethoscope.monitor.store import EventStore

    outbox_version = next(
        i for i, m in enumerate(MIGRATIONS, 1) if m.__name__ == "_v6_notify_outbox"
    )
    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine, target=outbox_version - 1)
    assert not inspect(engine).has_table("notify_outbox")
    engine.dispose()
    store = EventStore(str(path))
    model = store.register_model("fan", "dcase_ae", "v1", 1.0)
    store.record_score("fan", model, 0.5, 0)
    assert store.version == LATEST and outbox.messages(store) == []
    with store.engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("notify_outbox")}
        assert conn.execute(text("SELECT count(*) FROM scores")).scalar() == 1
    assert columns == {
        "id",
        "channel",
        "kind",
        "topic",
        "delivery_id",
        "payload",
        "created",
        "attempts",
        "next_attempt",
        "delivered_at",
        "last_error",
    }
    store.close()


def test_an_ordered_claim_never_passes_a_waiting_message(monitor, quiet_notifier) -> None:
    for score in (1.0, 2.0, 3.0):
        monitor.record("fan", score, 0)
    first = outbox.claim(monitor.store, "webhook:1", 1, lease_s=60, ordered=True)
    outbox.settle(monitor.store, [], {first[0].id: (0, "HTTP 503")}, cap=60)  # waits about 1 s
    assert outbox.claim(monitor.store, "webhook:1", 10, lease_s=60, ordered=True) == []
    unordered = outbox.claim(monitor.store, "webhook:1", 10, lease_s=60)
    assert [m.body["score"] for m in unordered] == [2.0, 3.0]
