"""The event store: machines, models, every score and the alarms they raise, on SQLAlchemy Core.

A score is written in one transaction together with what it does to its machine's alarm, and
`EventStore.record_score` returns only after that transaction committed: whoever acknowledges
a score after this call (the HTTP service answers 200) knows it is on disk (see `db` for what
"on disk" means for SQLite). The schema is versioned (`migrations`); opening a store migrates it.

The alarm rule (k of the last n decisions; one row of ``alarms`` per episode) is in
`store_alarms`; the tables, read queries and clip pruning are in `store_tables`,
`store_queries` and `store_clips`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..errors import StethoscopeError
from .db import database_url, make_engine, writing
from .migrations import DEFAULT_ALARM_K, DEFAULT_ALARM_N, migrate
from .store_alarms import AlarmChange, check_alarm_rule, update_alarm
from .store_clips import fit_budget, keep_clip
from .store_queries import MAX_LIMIT, alarm_query, checked_limit, event_query, machine_query
from .store_tables import CLIPS, MACHINES, MODELS, SCORES, WATCHED, inserted_id

__all__ = [
    "MAX_LIMIT",
    "AlarmChange",
    "AlreadyDone",
    "EventStore",
    "FileMark",
    "Recorded",
    "StoreError",
    "check_alarm_rule",
    "inserted_id",
]


class StoreError(StethoscopeError):
    """The database cannot be opened, read or written (names the database, never a traceback)."""


class AlreadyDone(StethoscopeError):
    """A watched recording already has its mark (another watcher finished it): nothing was
    written."""


@dataclass(frozen=True)
class FileMark:
    """One recording in a watched folder: the folder (absolute), the file's path below it, its
    size and its mtime in nanoseconds. A rewritten file (new size or mtime) is a new recording."""

    root: str
    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Recorded:
    """A committed score: its event id and time, and the alarm it raised, kept or cleared."""

    id: int
    time: float
    alarm: AlarmChange | None


class EventStore:
    """One database (SQLAlchemy URL or SQLite path), migrated to the latest schema on open.

    Writes from this process are serialised by a lock (SQLite allows one writer anyway); on a
    server database the machine's row is locked for the alarm update, so that several
    processes may write to one store."""

    def __init__(
        self, url: str, sync: str = "full", say: Callable[[str], None] = lambda message: None
    ) -> None:
        self.url, self.sync = database_url(url), sync
        self.engine: Engine = make_engine(self.url, sync)
        self._lock = threading.Lock()
        self._machine_ids: dict[str, int] = {}
        self.version = self._guard(lambda: migrate(self.engine, say=say))

    @property
    def where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _guard(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except SQLAlchemyError as err:
            raise StoreError(
                f"event store {self.where}: {getattr(err, 'orig', None) or err}"
            ) from err

    def close(self) -> None:
        self.engine.dispose()

    # -- machines and models --------------------------------------------------------------
    def ensure_machine(self, name: str, alarm: tuple[int, int] | None = None) -> int:
        """The machine's id, creating it (with ``alarm`` or the default rule); an ``alarm``
        given for an existing machine replaces its rule."""
        if alarm is not None:
            check_alarm_rule(*alarm)

        def run() -> int:
            with self._lock, writing(self.engine) as conn:
                row = conn.execute(select(MACHINES.c.id).where(MACHINES.c.name == name)).first()
                if row is None:
                    k, n = alarm or (DEFAULT_ALARM_K, DEFAULT_ALARM_N)
                    return inserted_id(
                        conn.execute(
                            MACHINES.insert().values(
                                name=name, created_at=time.time(), alarm_k=k, alarm_n=n
                            )
                        )
                    )
                if alarm is not None:
                    conn.execute(
                        update(MACHINES)
                        .where(MACHINES.c.id == row.id)
                        .values(alarm_k=alarm[0], alarm_n=alarm[1])
                    )
                return int(row.id)

        self._machine_ids[name] = self._guard(run)
        return self._machine_ids[name]

    def set_alarm_rule(self, name: str, k: int, n: int) -> None:
        self.ensure_machine(name, (k, n))

    def register_model(self, machine: str, system: str, version: str, threshold: float) -> int:
        """The id of (machine, model version), added on first sight."""
        machine_id = self._machine_ids.get(machine) or self.ensure_machine(machine)

        def run() -> int:
            with self._lock, writing(self.engine) as conn:
                found = conn.execute(
                    select(MODELS.c.id).where(
                        MODELS.c.machine_id == machine_id, MODELS.c.version == version
                    )
                ).scalar()
                if found is not None:
                    return int(found)
                return inserted_id(
                    conn.execute(
                        MODELS.insert().values(
                            machine_id=machine_id,
                            system=system,
                            version=version,
                            threshold=float(threshold),
                            loaded_at=time.time(),
                        )
                    )
                )

        return self._guard(run)

    # -- scores -----------------------------------------------------------------------------
    def record_score(
        self,
        machine: str,
        model_id: int,
        score: float,
        decision: int,
        source: str = "",
        at: float | None = None,
        audio: bytes | None = None,
        keep_audio: int = 0,
        mark: FileMark | None = None,
        keep_bytes: int | None = None,
        raise_alarm: bool = True,
        also: Callable[[Connection, Recorded], None] | None = None,
    ) -> Recorded:
        """Insert one score and update its machine's alarm in one transaction; returns after
        the commit (the event is durable when this returns). ``audio`` (FLAC bytes) is kept
        with it in the same transaction when ``keep_audio`` > 0, and the machine's clips past
        the newest ``keep_audio`` are deleted; with ``keep_bytes``, the oldest clips of every
        machine are deleted until all kept audio fits in that many bytes. With ``mark`` the
        watched file is marked done in the same transaction, so the score and the mark exist
        both or neither; a recording marked already raises `AlreadyDone` and writes nothing.
        ``raise_alarm`` False (a muted machine) raises no new alarm; an active one still
        clears. ``also(conn, recorded)`` writes more rows in the same transaction (the
        notification outbox, `notify.outbox`)."""
        machine_id = self._machine_ids.get(machine) or self.ensure_machine(machine)
        now = time.time() if at is None else float(at)

        def run() -> Recorded:
            with self._lock, _once(mark), writing(self.engine) as conn:
                rule = conn.execute(
                    select(MACHINES.c.alarm_k, MACHINES.c.alarm_n)
                    .where(MACHINES.c.id == machine_id)
                    .with_for_update()
                ).one()
                values = dict(
                    time=now,
                    machine_id=machine_id,
                    model_id=model_id,
                    source=source,
                    score=float(score),
                    decision=int(decision),
                )
                event_id = _insert_score(conn, values, machine, mark)
                if audio is not None and keep_audio > 0:
                    keep_clip(conn, machine_id, event_id, audio, keep_audio)
                    if keep_bytes is not None:
                        fit_budget(conn, keep_bytes)
                done = Recorded(
                    event_id,
                    now,
                    update_alarm(
                        conn, machine_id, rule.alarm_k, rule.alarm_n, event_id, now, raise_alarm
                    ),
                )
                if also is not None:
                    also(conn, done)
                return done

        return self._guard(run)

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[Connection]:
        """A write transaction under this process's write lock (committed when the block ends);
        a database error in it is a `StoreError`. ``durable=False`` commits an SQLite file
        without its fsync (``synchronous=NORMAL`` for this one transaction): for bookkeeping
        whose loss in a power cut is harmless (the notification outbox's delivery marks)."""
        relax = not durable and self.engine.dialect.name == "sqlite" and self.sync != "normal"
        try:
            with self._lock, self.engine.connect() as conn:
                raw: Any = conn.connection.driver_connection  # pysqlite's: no implicit BEGIN
                if relax:
                    raw.execute("PRAGMA synchronous=NORMAL")
                try:
                    conn.execution_options(write=True)
                    with conn.begin():
                        yield conn
                finally:
                    if relax:
                        raw.execute(f"PRAGMA synchronous={self.sync.upper()}")
        except SQLAlchemyError as err:
            raise StoreError(
                f"event store {self.where}: {getattr(err, 'orig', None) or err}"
            ) from err

    def kept_bytes(self) -> int:
        """The bytes of all kept clip audio."""

        def run() -> int:
            with self.engine.connect() as conn:
                return int(
                    conn.execute(select(func.coalesce(func.sum(CLIPS.c.bytes), 0))).scalar_one()
                )

        return self._guard(run)

    # -- reading --------------------------------------------------------------------------
    def events(
        self,
        machine: str | None = None,
        since: float | None = None,
        after_id: int | None = None,
        limit: int = 100,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """Scores (with machine name, model version and threshold), filtered; the newest
        ``limit`` ones (or, ``newest_first=False``, the oldest, for paging with ``after_id``)."""
        query = event_query()
        if machine is not None:
            query = query.where(MACHINES.c.name == machine)
        if since is not None:
            query = query.where(SCORES.c.time >= since)
        if after_id is not None:
            query = query.where(SCORES.c.id > after_id)
        query = query.order_by(SCORES.c.id.desc() if newest_first else SCORES.c.id).limit(
            checked_limit(limit)
        )
        return self._rows(query)

    def event(self, event_id: int) -> dict[str, Any] | None:
        """One score as `events` gives it, plus ``has_audio``; None when there is no such event."""
        query = (
            event_query(CLIPS.c.score_id.is_not(None).label("has_audio"))
            .outerjoin(CLIPS, CLIPS.c.score_id == SCORES.c.id)
            .where(SCORES.c.id == event_id)
        )
        rows = self._rows(query)
        return {**rows[0], "has_audio": bool(rows[0]["has_audio"])} if rows else None

    def clip_audio(self, event_id: int) -> bytes | None:
        """The FLAC bytes kept for event ``event_id``, or None (not kept, pruned, or no such
        event)."""

        def run() -> bytes | None:
            with self.engine.connect() as conn:
                found = conn.execute(
                    select(CLIPS.c.flac).where(CLIPS.c.score_id == event_id)
                ).scalar()
                return None if found is None else bytes(found)

        return self._guard(run)

    def alarms(
        self, machine: str | None = None, active: bool | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Alarm episodes, newest first."""
        query = alarm_query(machine, active)
        rows = self._rows(query.limit(checked_limit(limit)))
        return [{**row, "active": row["cleared_at"] is None} for row in rows]

    def machines(self) -> list[dict[str, Any]]:
        """Every machine with its alarm rule, score count and whether an alarm is active."""
        query = machine_query()
        return self._rows(query)

    # -- watched files ----------------------------------------------------------------------
    def mark_skipped(self, mark: FileMark, reason: str, machine: str | None = None) -> None:
        """Mark a watched recording done without a score, saying why; `AlreadyDone` when it has
        a mark already."""

        def run() -> None:
            with self._lock, _once(mark), writing(self.engine) as conn:
                conn.execute(
                    WATCHED.insert().values(
                        **vars(mark), machine=machine, skip_reason=reason[:1000], time=time.time()
                    )
                )

        self._guard(run)

    def done_files(self, root: str, paths: list[str]) -> dict[str, set[tuple[int, int]]]:
        """{path: {(size, mtime_ns), ...}} of the recordings of ``paths`` below ``root`` that
        are marked done (scored or skipped)."""
        found: dict[str, set[tuple[int, int]]] = {}
        for start in range(0, len(paths), 500):  # keep each IN (...) list short
            query = select(WATCHED.c.path, WATCHED.c.size, WATCHED.c.mtime_ns).where(
                WATCHED.c.root == root, WATCHED.c.path.in_(paths[start : start + 500])
            )
            for row in self._rows(query):
                found.setdefault(row["path"], set()).add((row["size"], row["mtime_ns"]))
        return found

    def watched_files(self, root: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest marks of watched recordings (of ``root``, or of every folder), newest
        first."""
        query = select(WATCHED)
        if root is not None:
            query = query.where(WATCHED.c.root == root)
        return self._rows(query.order_by(WATCHED.c.id.desc()).limit(checked_limit(limit)))

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers."""

        def run() -> None:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        self._guard(run)

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(query)]

        return self._guard(run)


def _insert_score(
    conn: Connection, values: dict[str, Any], machine: str, mark: FileMark | None
) -> int:
    """Insert one score row and, with ``mark``, its watched file's mark; the score's id."""
    event_id = inserted_id(conn.execute(SCORES.insert().values(**values)))
    if mark is not None:
        conn.execute(
            WATCHED.insert().values(
                **vars(mark), machine=machine, score_id=event_id, time=values["time"]
            )
        )
    return event_id


@contextmanager
def _once(mark: FileMark | None) -> Iterator[None]:
    """Turn the unique-key failure of a second mark of one recording into `AlreadyDone` (the
    transaction it happened in is rolled back on the way out)."""
    try:
        yield
    except IntegrityError as err:
        if mark is None or "watched_files" not in str(err.orig):
            raise
        raise AlreadyDone(
            f"{mark.root}/{mark.path} ({mark.size} bytes, mtime {mark.mtime_ns}) is done already"
        ) from None
