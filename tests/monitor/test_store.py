"""The event store on real SQLite files: alarms, reading back, migrations, durability settings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from stethoscope.errors import ConfigError
from stethoscope.monitor.db import make_engine
from stethoscope.monitor.migrations import LATEST, migrate
from stethoscope.monitor.store import EventStore


@pytest.fixture
def store(tmp_path: Path):
    s = EventStore(str(tmp_path / "events.db"))
    yield s
    s.close()


def _record(store: EventStore, machine: str, decisions: list[int]) -> list:
    model = store.register_model(machine, "dcase_ae", "v1", 1.0)
    return [store.record_score(machine, model, 1.0 + d, d, "test") for d in decisions]


def test_sqlite_file_is_wal_with_the_chosen_sync(tmp_path: Path) -> None:
    for sync, level in (("full", 2), ("normal", 1)):
        s = EventStore(str(tmp_path / f"{sync}.db"), sync=sync)
        with s.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == level
        s.close()
    with pytest.raises(ConfigError, match="sync mode"):
        EventStore(str(tmp_path / "x.db"), sync="off")
    with pytest.raises(ConfigError, match="in-memory"):
        EventStore("sqlite://")
    with pytest.raises(ConfigError, match="no usable database driver"):
        EventStore("nosuchdb://user:secret@host/db")


def test_alarm_raised_by_k_of_n_and_cleared(store: EventStore) -> None:
    store.ensure_machine("fan", (2, 3))
    states = [
        r.alarm.state if r.alarm else None for r in _record(store, "fan", [1, 0, 1, 1, 0, 0, 0, 1])
    ]
    # last-3 windows: 1 | 1 | 2 raise | 2 | 2 | 1 clear | 0 | 1
    assert states == [None, None, "raised", "active", "active", "cleared", None, None]
    (alarm,) = store.alarms("fan")
    events = store.events("fan", newest_first=False)
    assert (
        alarm["raised_score_id"] == events[2]["id"] and alarm["cleared_score_id"] == events[5]["id"]
    )
    assert (alarm["k"], alarm["n"], alarm["active"]) == (2, 3, False)


def test_alarm_rules_are_per_machine(store: EventStore) -> None:
    store.ensure_machine("fan", (1, 1))
    store.ensure_machine("pump")  # the default rule, 3 of 5
    assert _record(store, "fan", [1])[0].alarm.state == "raised"
    assert [r.alarm for r in _record(store, "pump", [1, 1])] == [None, None]
    assert _record(store, "pump", [1])[0].alarm.state == "raised"
    assert {a["machine"] for a in store.alarms(active=True)} == {"fan", "pump"}
    store.set_alarm_rule("pump", 4, 4)  # a stricter rule clears with the next score
    assert _record(store, "pump", [1])[0].alarm.state == "active"  # 4 of the last 4
    assert _record(store, "pump", [0])[0].alarm.state == "cleared"
    rules = {m["name"]: (m["alarm_k"], m["alarm_n"], m["scores"]) for m in store.machines()}
    assert rules == {"fan": (1, 1, 1), "pump": (4, 4, 5)}
    with pytest.raises(ConfigError, match="k of the last n"):
        store.set_alarm_rule("pump", 6, 5)


def test_events_filters(store: EventStore) -> None:
    a = _record(store, "fan", [0, 1, 0])
    b = _record(store, "pump", [0])
    assert [e["id"] for e in store.events()] == [b[0].id, a[2].id, a[1].id, a[0].id]  # newest first
    assert [e["id"] for e in store.events("fan", newest_first=False, limit=2)] == [a[0].id, a[1].id]
    assert [e["id"] for e in store.events(after_id=a[1].id, newest_first=False)] == [
        a[2].id,
        b[0].id,
    ]
    assert [e["id"] for e in store.events(since=a[2].time)] == [b[0].id, a[2].id]
    first = store.events("fan", newest_first=False)[1]
    assert first["score"] == 2.0 and first["decision"] == 1 and first["model_version"] == "v1"
    assert first["threshold"] == 1.0 and first["source"] == "test" and first["system"] == "dcase_ae"
    with pytest.raises(ConfigError, match="limit"):
        store.events(limit=0)


def test_models_are_registered_once_per_version(store: EventStore) -> None:
    first = store.register_model("fan", "dcase_ae", "aaaa", 1.0)
    assert store.register_model("fan", "dcase_ae", "aaaa", 1.0) == first
    assert store.register_model("fan", "dcase_ae", "bbbb", 2.0) != first


def test_scores_survive_reopening_and_ids_are_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    s = EventStore(str(path))
    ids = [r.id for r in _record(s, "fan", [0, 1])]
    s.close()
    with sqlite3.connect(path) as raw:  # another reader of the file sees them
        assert [row[0] for row in raw.execute("SELECT id FROM scores ORDER BY id")] == ids
        raw.execute("DELETE FROM scores WHERE id = ?", (ids[-1],))
    s = EventStore(str(path))
    assert (
        _record(s, "fan", [0])[0].id == ids[-1] + 1
    )  # AUTOINCREMENT: an answered id never names another event
    s.close()


def _old_database(path: Path, version: int) -> set[str]:
    """A database at schema ``version`` holding what such a service wrote: machine fan, one model
    and one score (7.5, anomalous, source mic); returns its table names."""
    engine = make_engine(f"sqlite:///{path}")
    assert migrate(engine, target=version) == version
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO machines (id, name, created_at) VALUES (1, 'fan', 0.0)"))
        conn.execute(
            text(
                "INSERT INTO models (id, machine_id, system, version, threshold, loaded_at) "
                "VALUES (1, 1, 'dcase_ae', 'old', 5.0, 0.0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO scores (time, machine_id, model_id, source, score, decision) "
                "VALUES (10.0, 1, 1, 'mic', 7.5, 1)"
            )
        )
        tables = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master"))}
    engine.dispose()
    return tables


def test_migration_from_v1_to_v2_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    assert "alarms" not in _old_database(path, 1)

    store = EventStore(str(path))  # opening migrates
    assert store.version == LATEST  # every later migration applied too
    (old,) = store.events()
    assert (old["machine"], old["score"], old["decision"], old["model_version"]) == (
        "fan",
        7.5,
        1,
        "old",
    )
    assert (
        store.machines()[0]["alarm_k"] == 3 and store.machines()[0]["alarm_n"] == 5
    )  # the default rule
    store.set_alarm_rule("fan", 2, 2)
    assert store.record_score("fan", 1, 9.0, 1, "mic").alarm.state == "raised"  # with the v1 score
    store.close()
    with sqlite3.connect(path) as raw:
        versions = [
            row[0] for row in raw.execute("SELECT version FROM schema_version ORDER BY version")
        ]
        assert versions == list(range(1, LATEST + 1))


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    EventStore(str(path)).close()
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO schema_version VALUES (99, 0.0)")
    with pytest.raises(ConfigError, match="newer than this stethoscope"):
        EventStore(str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        migrate(make_engine(f"sqlite:///{tmp_path / 'y.db'}"), target=LATEST + 1)


def test_migration_from_v2_keeps_history_and_adds_clips(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    assert "clips" not in _old_database(path, 2)

    store = EventStore(str(path))  # opening migrates
    assert store.version == LATEST >= 3
    (old,) = store.events()
    assert (old["score"], old["source"]) == (7.5, "mic")
    assert store.event(old["id"])["has_audio"] is False and store.clip_audio(old["id"]) is None
    new = store.record_score("fan", 1, 9.0, 1, "mic", audio=b"fLaC-bytes", keep_audio=5)
    assert store.clip_audio(new.id) == b"fLaC-bytes" and store.event(new.id)["has_audio"] is True
    assert store.event(new.id + 1) is None
    store.close()


def test_audio_is_kept_for_the_newest_n_clips_per_machine(store: EventStore) -> None:
    fan = store.register_model("fan", "dcase_ae", "v1", 1.0)
    pump = store.register_model("pump", "dcase_ae", "v1", 1.0)
    fans = [
        store.record_score("fan", fan, 0.5, 0, audio=f"fan{i}".encode(), keep_audio=3).id
        for i in range(5)
    ]
    pumps = [
        store.record_score("pump", pump, 0.5, 0, audio=f"pump{i}".encode(), keep_audio=3).id
        for i in range(2)
    ]
    assert [store.clip_audio(i) for i in fans] == [None, None, b"fan2", b"fan3", b"fan4"]
    assert [store.clip_audio(i) for i in pumps] == [
        b"pump0",
        b"pump1",
    ]  # another machine's clips do not count
    quiet = store.record_score("fan", fan, 0.5, 0, audio=b"not kept", keep_audio=0)
    assert (
        store.clip_audio(quiet.id) is None and store.clip_audio(fans[-1]) == b"fan4"
    )  # 0: keep none, prune none
    store.record_score(
        "fan", fan, 0.5, 0, audio=b"fan5", keep_audio=1
    )  # a smaller limit prunes down to it
    assert [store.clip_audio(i) for i in fans] == [None] * 5
    assert len(store.events("fan")) == 7  # pruning audio never deletes scores


def test_kept_audio_fits_its_byte_budget_oldest_dropped_first(store: EventStore) -> None:
    fan = store.register_model("fan", "dcase_ae", "v1", 1.0)
    pump = store.register_model("pump", "dcase_ae", "v1", 1.0)
    ids = []
    for i in range(6):  # 100-byte clips, alternating machines, in a 350-byte budget
        machine, model = ("fan", fan) if i % 2 == 0 else ("pump", pump)
        ids.append(
            store.record_score(
                machine, model, 0.5, 0, audio=bytes([i]) * 100, keep_audio=100, keep_bytes=350
            ).id
        )
        assert store.kept_bytes() <= 350
    assert [store.clip_audio(i) is not None for i in ids] == [False, False, False, True, True, True]
    big = store.record_score("fan", fan, 0.5, 0, audio=b"x" * 300, keep_audio=100, keep_bytes=350)
    assert [store.clip_audio(i) is not None for i in ids] == [
        False
    ] * 6  # every older clip, any machine, went first
    assert store.clip_audio(big.id) == b"x" * 300 and store.kept_bytes() == 300
    store.record_score("fan", fan, 0.5, 0, audio=b"y" * 400, keep_audio=100, keep_bytes=350)
    assert store.kept_bytes() == 0  # a clip over the whole budget is not kept either
    assert len(store.events(limit=100)) == 8  # scores stay


def test_migration_to_v5_counts_the_bytes_of_kept_clips(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine, target=4)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO machines (id, name, created_at) VALUES (1, 'fan', 0)"))
        conn.execute(
            text(
                "INSERT INTO models (id, machine_id, system, version, threshold, loaded_at) "
                "VALUES (1, 1, 'dcase_ae', 'v1', 1.0, 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO scores (id, time, machine_id, model_id, source, score, decision) "
                "VALUES (1, 0, 1, 1, 'mic', 1.0, 0)"
            )
        )
        conn.execute(
            text("INSERT INTO clips (score_id, machine_id, flac) VALUES (1, 1, :b)"),
            {"b": b"a" * 1234},
        )
    engine.dispose()
    store = EventStore(str(path))
    assert (
        store.version == LATEST >= 5
        and store.kept_bytes() == 1234
        and store.clip_audio(1) == b"a" * 1234
    )
    store.close()


def test_a_new_database_and_its_wal_and_shm_files_are_0600(tmp_path: Path) -> None:
    import os
    import stat

    old = os.umask(0o022)  # the usual umask, which would give 0644
    try:
        store = EventStore(str(tmp_path / "sub" / "events.db"))
        store.record_score("fan", store.register_model("fan", "dcase_ae", "v1", 1.0), 0.5, 0)
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "sub").iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert set(files) >= {"events.db", "events.db-wal", "events.db-shm"}
    assert all(mode == 0o600 for mode in files.values()), {k: oct(v) for k, v in files.items()}
