"""What operators do, in the event store (schema v6, `migrations._v6_operator_actions`):
acknowledge an alarm with a note, label an event ("normal" after all, or confirmed "fault"),
mute a machine for a time window and cancel a mute. Each action is written in one transaction
together with its line in the audit log (``operator_actions``), with its author (the name of
the token that did it) and its time, and returns after the commit.

A mute keeps scoring and storing a machine's events but raises no alarm for it while it lasts
(`Operators.active_mute`, which `service.Monitor.muted` asks before each score).
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    select,
    update,
)

from ..errors import ConfigError, StethoscopeError
from .db import writing
from .store import EventStore
from .store_queries import checked_limit
from .store_tables import ALARMS, CLIPS, MACHINES, MODELS, SCORES

METADATA = MetaData()
ACKS = Table(
    "alarm_acks",
    METADATA,
    Column("alarm_id", Integer, primary_key=True),
    Column("time", Float),
    Column("author", String(64)),
    Column("note", String(1000)),
)
LABELS = Table(
    "event_labels",
    METADATA,
    Column("score_id", Integer, primary_key=True),
    Column("machine_id", Integer),
    Column("label", String(16)),
    Column("time", Float),
    Column("author", String(64)),
    Column("note", String(1000)),
)
MUTES = Table(
    "mutes",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("machine_id", Integer),
    Column("starts_at", Float),
    Column("ends_at", Float),
    Column("reason", String(1000)),
    Column("author", String(64)),
    Column("created_at", Float),
    Column("cancelled_at", Float),
    Column("cancelled_by", String(64)),
)
ACTIONS = Table(
    "operator_actions",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("time", Float),
    Column("author", String(64)),
    Column("action", String(16)),
    Column("machine", String(64)),
    Column("target_id", Integer),
    Column("detail", String(2000)),
)
LABEL_NAMES = ("normal", "fault")
MAX_NOTE = 1000
MAX_MUTE_S = 31 * 24 * 3600  # one mute covers at most a month: a forgotten mute must end


class ActionRefused(StethoscopeError):
    """An operator action that cannot be done: ``status`` 404 (no such alarm, event or mute) or
    409 (done already, or over)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_note(note: str, what: str = "note") -> str:
    """A free-text note of at most `MAX_NOTE` characters (any text: the dashboard shows it as
    text, never as markup)."""
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise ConfigError(f"{what} must be text of at most {MAX_NOTE} characters")
    return note


def check_window(starts_at: float, ends_at: float, now: float) -> None:
    """A `ConfigError` unless a mute window ends after it starts, in the future, and lasts at
    most `MAX_MUTE_S`."""
    if not ends_at > starts_at:
        raise ConfigError(
            f"a mute must end after it starts (start {starts_at:.0f}, end {ends_at:.0f})"
        )
    if ends_at <= now:
        raise ConfigError(f"the mute's end ({ends_at:.0f}) is in the past")
    if ends_at - max(starts_at, now) > MAX_MUTE_S:
        raise ConfigError(f"a mute lasts at most {MAX_MUTE_S // 86400} days; set a nearer end")


class Operators:
    """Operator actions on one `EventStore` (see the module docstring)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def _write(self, call: Any) -> Any:
        def run() -> Any:
            with self.store._lock, writing(self.store.engine) as conn:
                return call(conn)

        return self.store._guard(run)

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        return self.store._rows(query)

    @staticmethod
    def _log(
        conn: Any, now: float, author: str, action: str, machine: str, target: int, **detail: Any
    ) -> None:
        conn.execute(
            ACTIONS.insert().values(
                time=now,
                author=author,
                action=action,
                machine=machine,
                target_id=target,
                detail=json.dumps(detail)[:2000],
            )
        )

    # -- actions ----------------------------------------------------------------------------
    def acknowledge(self, alarm_id: int, author: str, note: str = "") -> dict[str, Any]:
        """Acknowledge alarm ``alarm_id`` (active or cleared) once; 404/409 as `ActionRefused`."""
        check_note(note)

        def run(conn: Any) -> dict[str, Any]:
            machine = conn.execute(
                select(MACHINES.c.name)
                .join(ALARMS, ALARMS.c.machine_id == MACHINES.c.id)
                .where(ALARMS.c.id == alarm_id)
            ).scalar()
            if machine is None:
                raise ActionRefused(404, f"no alarm {alarm_id}")
            done = conn.execute(select(ACKS).where(ACKS.c.alarm_id == alarm_id)).first()
            if done is not None:
                raise ActionRefused(
                    409, f"alarm {alarm_id} was acknowledged by {done.author} already"
                )
            now = time.time()
            conn.execute(
                ACKS.insert().values(alarm_id=alarm_id, time=now, author=author, note=note)
            )
            self._log(conn, now, author, "ack", machine, alarm_id, note=note)
            return {
                "alarm_id": alarm_id,
                "machine": machine,
                "time": now,
                "author": author,
                "note": note,
            }

        return self._write(run)

    def label(self, event_id: int, label: str, author: str, note: str = "") -> dict[str, Any]:
        """Label event ``event_id`` "normal" or "fault" (a later label replaces it; the audit
        log keeps both); 404 as `ActionRefused`."""
        check_note(note)
        if label not in LABEL_NAMES:
            raise ConfigError(f"label must be one of {', '.join(LABEL_NAMES)}, got {label[:40]!r}")

        def run(conn: Any) -> dict[str, Any]:
            found = conn.execute(
                select(SCORES.c.machine_id, MACHINES.c.name)
                .join(MACHINES, MACHINES.c.id == SCORES.c.machine_id)
                .where(SCORES.c.id == event_id)
            ).first()
            if found is None:
                raise ActionRefused(404, f"no event {event_id}")
            now = time.time()
            conn.execute(delete(LABELS).where(LABELS.c.score_id == event_id))
            conn.execute(
                LABELS.insert().values(
                    score_id=event_id,
                    machine_id=found.machine_id,
                    label=label,
                    time=now,
                    author=author,
                    note=note,
                )
            )
            self._log(conn, now, author, "label", found.name, event_id, label=label, note=note)
            return {
                "event_id": event_id,
                "machine": found.name,
                "label": label,
                "time": now,
                "author": author,
                "note": note,
            }

        return self._write(run)

    def mute(
        self, machine: str, starts_at: float | None, ends_at: float, reason: str, author: str
    ) -> dict[str, Any]:
        """Mute ``machine`` from ``starts_at`` (None: now) to ``ends_at`` (Unix seconds)."""
        now = time.time()
        starts_at = now if starts_at is None else float(starts_at)
        check_window(starts_at, float(ends_at), now)
        check_note(reason, "reason")
        machine_id = self.store._machine_ids.get(machine) or self.store.ensure_machine(machine)

        def run(conn: Any) -> dict[str, Any]:
            mute_id = int(
                conn.execute(
                    MUTES.insert().values(
                        machine_id=machine_id,
                        starts_at=starts_at,
                        ends_at=float(ends_at),
                        reason=reason,
                        author=author,
                        created_at=now,
                    )
                ).inserted_primary_key[0]
            )
            self._log(
                conn,
                now,
                author,
                "mute",
                machine,
                mute_id,
                starts_at=starts_at,
                ends_at=ends_at,
                reason=reason,
            )
            return {
                "id": mute_id,
                "machine": machine,
                "starts_at": starts_at,
                "ends_at": float(ends_at),
                "reason": reason,
                "author": author,
                "created_at": now,
                "cancelled_at": None,
                "cancelled_by": None,
            }

        return self._write(run)

    def cancel_mute(self, mute_id: int, author: str) -> dict[str, Any]:
        """End mute ``mute_id`` now; 404 (no such mute) or 409 (over) as `ActionRefused`."""

        def run(conn: Any) -> dict[str, Any]:
            row = conn.execute(_mute_query().where(MUTES.c.id == mute_id)).first()
            if row is None:
                raise ActionRefused(404, f"no mute {mute_id}")
            now = time.time()
            if row.cancelled_at is not None or row.ends_at <= now:
                raise ActionRefused(409, f"mute {mute_id} is over already")
            conn.execute(
                update(MUTES)
                .where(MUTES.c.id == mute_id)
                .values(cancelled_at=now, cancelled_by=author)
            )
            self._log(conn, now, author, "unmute", row.machine, mute_id)
            return {**row._mapping, "cancelled_at": now, "cancelled_by": author}

        return self._write(run)

    # -- reading ----------------------------------------------------------------------------
    def active_mute(self, machine: str, at: float | None = None) -> dict[str, Any] | None:
        """The mute of ``machine`` in force at ``at`` (default now), or None."""
        at = time.time() if at is None else at
        rows = self._rows(
            _mute_query()
            .where(
                MACHINES.c.name == machine,
                MUTES.c.cancelled_at.is_(None),
                MUTES.c.starts_at <= at,
                MUTES.c.ends_at > at,
            )
            .order_by(MUTES.c.ends_at.desc())
            .limit(1)
        )
        return rows[0] if rows else None

    def mutes(
        self, machine: str | None = None, current: bool | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Mutes, newest first; ``current`` True: in force or to come, False: over."""
        query = _mute_query()
        if machine is not None:
            query = query.where(MACHINES.c.name == machine)
        if current is not None:
            live = (MUTES.c.cancelled_at.is_(None)) & (MUTES.c.ends_at > time.time())
            query = query.where(live if current else ~live)
        return self._rows(query.order_by(MUTES.c.id.desc()).limit(checked_limit(limit)))

    def labels(
        self, machine: str | None = None, label: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Labelled events, newest label first."""
        query = select(
            LABELS.c.score_id.label("event_id"),
            MACHINES.c.name.label("machine"),
            LABELS.c.label,
            LABELS.c.time,
            LABELS.c.author,
            LABELS.c.note,
        ).join(MACHINES, MACHINES.c.id == LABELS.c.machine_id)
        if machine is not None:
            query = query.where(MACHINES.c.name == machine)
        if label is not None:
            query = query.where(LABELS.c.label == label)
        return self._rows(query.order_by(LABELS.c.time.desc()).limit(checked_limit(limit)))

    def acks(self, alarm_ids: list[int]) -> dict[int, dict[str, Any]]:
        """{alarm id: its acknowledgement (time, author, note)} of those acknowledged."""
        if not alarm_ids:
            return {}
        rows = self._rows(select(ACKS).where(ACKS.c.alarm_id.in_(alarm_ids[:10_000])))
        return {row["alarm_id"]: {k: row[k] for k in ("time", "author", "note")} for row in rows}

    def actions(
        self, machine: str | None = None, author: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The audit log, newest first: every action with its author, time, target and details."""
        query = select(ACTIONS)
        if machine is not None:
            query = query.where(ACTIONS.c.machine == machine)
        if author is not None:
            query = query.where(ACTIONS.c.author == author)
        rows = self._rows(query.order_by(ACTIONS.c.id.desc()).limit(checked_limit(limit)))
        return [{**row, "detail": json.loads(row["detail"])} for row in rows]

    def labelled_clips(self, machine: str, label: str = "normal") -> list[dict[str, Any]]:
        """The events of ``machine`` labelled ``label``, oldest first, each with its stored score,
        model version and kept audio (``flac``: bytes, or None where it was not kept or pruned)."""
        query = (
            select(
                SCORES.c.id, SCORES.c.score, MODELS.c.version.label("model_version"), CLIPS.c.flac
            )
            .join(LABELS, LABELS.c.score_id == SCORES.c.id)
            .join(MACHINES, MACHINES.c.id == SCORES.c.machine_id)
            .join(MODELS, MODELS.c.id == SCORES.c.model_id)
            .outerjoin(CLIPS, CLIPS.c.score_id == SCORES.c.id)
            .where(MACHINES.c.name == machine, LABELS.c.label == label)
            .order_by(SCORES.c.id)
        )
        return self._rows(query)


def _mute_query() -> Any:
    return select(
        MUTES.c.id,
        MACHINES.c.name.label("machine"),
        MUTES.c.starts_at,
        MUTES.c.ends_at,
        MUTES.c.reason,
        MUTES.c.author,
        MUTES.c.created_at,
        MUTES.c.cancelled_at,
        MUTES.c.cancelled_by,
    ).join(MACHINES, MACHINES.c.id == MUTES.c.machine_id)
