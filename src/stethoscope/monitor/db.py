"""Engines for the event store: any SQLAlchemy URL; SQLite files get WAL, a durable sync mode
and real transactions, and are created readable by their owner only (0600, with their -wal and
-shm files).

Durability of an SQLite commit (``PRAGMA journal_mode=WAL``):

* ``synchronous=FULL`` (the default here): the WAL is fsynced at every commit, so a commit
  that returned survives a killed process *and* a power cut or kernel crash (on a disk that
  honours fsync).
* ``synchronous=NORMAL``: the commit is written to the WAL file (the operating system's page
  cache) but fsynced only at checkpoints. It survives ``kill -9`` of the process, since the
  kernel still writes the page cache out, but the last commits may be lost on a power cut.

pysqlite's own transaction handling starts transactions late and never for DDL; the hooks
below turn it off and emit ``BEGIN`` themselves (the recipe of SQLAlchemy's SQLite docs), so
migrations are atomic and writers take the write lock up front (``BEGIN IMMEDIATE``) instead
of failing on a lock upgrade when two processes write to one file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigError

SYNC_MODES = ("full", "normal")
BUSY_TIMEOUT_S = 30.0


def database_url(value: str | Path) -> str:
    """A SQLAlchemy URL from ``--db``: a URL as given, a plain path as an SQLite file URL."""
    text = str(value)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def make_engine(url: str, sync: str = "full") -> Engine:
    """An engine for ``url``; SQLite files get WAL, ``synchronous=<sync>``, foreign keys and a
    busy timeout, and their parent folder is created."""
    if sync not in SYNC_MODES:
        raise ConfigError(f"sync mode must be one of {', '.join(SYNC_MODES)}, got {sync!r}")
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError(
            f"--db {url!r} is neither a file path nor a SQLAlchemy URL ({err})"
        ) from err
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (ArgumentError, ModuleNotFoundError) as err:
            raise ConfigError(
                f"--db {parsed.render_as_string(hide_password=True)}: no usable database driver "
                f"({err}); install it (e.g. pip install psycopg for postgresql+psycopg://)"
            ) from err
    if parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            "the event store needs an SQLite file (an in-memory database loses every event on exit)"
        )
    _create_private(Path(parsed.database))
    engine = create_engine(
        parsed, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        del record
        dbapi_connection.isolation_level = (
            None  # no implicit BEGIN from pysqlite: the hook below emits it
        )
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sync.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN"
        )

    return engine


def _create_private(path: Path) -> None:
    """Create a missing SQLite file 0600 (it holds plant audio): SQLite gives its ``-wal`` and
    ``-shm`` files the database file's permissions, so they are 0600 too. An existing file
    keeps the permissions its owner chose."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as err:
        raise ConfigError(
            f"--db {path}: cannot create the event store ({err.strerror or err})"
        ) from err


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: committed when the block ends, rolled back on an error. On SQLite
    it holds the write lock from its first statement (``BEGIN IMMEDIATE``)."""
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            yield conn
