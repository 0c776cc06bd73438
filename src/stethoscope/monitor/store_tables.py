"""The event store's tables (SQLAlchemy Core): machines, models, scores, alarms, watched files
and kept clips. The schema itself is created and upgraded by `migrations`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    CursorResult,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

from ..errors import StethoscopeError

METADATA = MetaData()
MACHINES = Table(
    "machines",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("alarm_k", Integer, nullable=False),
    Column("alarm_n", Integer, nullable=False),
)
MODELS = Table(
    "models",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("machine_id", ForeignKey("machines.id")),
    Column("system", String(64)),
    Column("version", String(64)),
    Column("threshold", Float),
    Column("loaded_at", Float),
)
SCORES = Table(
    "scores",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("time", Float),
    Column("machine_id", ForeignKey("machines.id")),
    Column("model_id", ForeignKey("models.id")),
    Column("source", String(200)),
    Column("score", Float),
    Column("decision", Integer),
)
ALARMS = Table(
    "alarms",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("machine_id", ForeignKey("machines.id")),
    Column("k", Integer),
    Column("n", Integer),
    Column("raised_at", Float),
    Column("raised_score_id", ForeignKey("scores.id")),
    Column("cleared_at", Float),
    Column("cleared_score_id", ForeignKey("scores.id")),
)
WATCHED = Table(
    "watched_files",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("root", String(4096)),
    Column("path", String(4096)),
    Column("size", Integer),
    Column("mtime_ns", Integer),
    Column("machine", String(64)),
    Column("score_id", ForeignKey("scores.id")),
    Column("skip_reason", String(1000)),
    Column("time", Float),
)
CLIPS = Table(
    "clips",
    METADATA,
    Column("score_id", ForeignKey("scores.id"), primary_key=True),
    Column("machine_id", ForeignKey("machines.id")),
    Column("flac", LargeBinary),
    Column("bytes", Integer),
)


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row a single-row INSERT wrote (SQLAlchemy types it optional: it
    is None only for a statement that inserted no row)."""
    key = result.inserted_primary_key
    if key is None:
        raise StethoscopeError("the database gave no primary key for the row just inserted")
    return int(key[0])
