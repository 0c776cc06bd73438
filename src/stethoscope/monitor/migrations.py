"""The event store's schema, version by version: an ordered list of migrations applied on open.

Each migration is a function of one connection that moves the schema from version ``i`` to
``i + 1``; it runs in one transaction with the row that records it in ``schema_version``, so a
crash leaves the database at the old version or the new one. A migration describes its own
tables (never the current ones in `store`), so that an old database always migrates the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
    text,
)

from ..errors import ConfigError
from .db import writing

Migration = Callable[[Connection], None]
DEFAULT_ALARM_K, DEFAULT_ALARM_N = 3, 5


def _version_table(metadata: MetaData) -> Table:
    return Table(
        "schema_version",
        metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("applied_at", Float, nullable=False),
    )


def _v1_machines_models_scores(conn: Connection) -> None:
    """Machines, the models that scored for them (system, content hash, threshold), and scores."""
    md = MetaData()
    Table(
        "machines",
        md,
        Column("id", Integer, primary_key=True),
        Column("name", String(64), nullable=False, unique=True),
        Column("created_at", Float, nullable=False),
    )
    Table(
        "models",
        md,
        Column("id", Integer, primary_key=True),
        Column("machine_id", Integer, ForeignKey("machines.id"), nullable=False),
        Column("system", String(64), nullable=False),
        Column("version", String(64), nullable=False),
        Column("threshold", Float, nullable=False),
        Column("loaded_at", Float, nullable=False),
        UniqueConstraint("machine_id", "version", name="uq_models_machine_version"),
    )
    scores = Table(
        "scores",
        md,
        Column("id", Integer, primary_key=True),
        Column("time", Float, nullable=False),
        Column("machine_id", Integer, ForeignKey("machines.id"), nullable=False),
        Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
        Column("source", String(200), nullable=False),
        Column("score", Float, nullable=False),
        Column("decision", Integer, nullable=False),
        sqlite_autoincrement=True,
    )  # ids are never reused: an acknowledged id names one event
    Index("ix_scores_machine_id", scores.c.machine_id, scores.c.id)
    Index("ix_scores_time", scores.c.time)
    md.create_all(conn)


def _v2_alarms(conn: Connection) -> None:
    """Alarms: a rule per machine (k of the last n decisions anomalous) and raised/cleared
    episodes."""
    for column, default in (("alarm_k", DEFAULT_ALARM_K), ("alarm_n", DEFAULT_ALARM_N)):
        conn.execute(
            text(f"ALTER TABLE machines ADD COLUMN {column} INTEGER NOT NULL DEFAULT {default}")
        )
    md = MetaData()
    Table("machines", md, Column("id", Integer, primary_key=True))
    Table("scores", md, Column("id", Integer, primary_key=True))
    alarms = Table(
        "alarms",
        md,
        Column("id", Integer, primary_key=True),
        Column("machine_id", Integer, ForeignKey("machines.id"), nullable=False),
        Column("k", Integer, nullable=False),
        Column("n", Integer, nullable=False),
        Column("raised_at", Float, nullable=False),
        Column("raised_score_id", Integer, ForeignKey("scores.id"), nullable=False),
        Column("cleared_at", Float),
        Column("cleared_score_id", Integer, ForeignKey("scores.id")),
        sqlite_autoincrement=True,
    )
    Index("ix_alarms_machine_id", alarms.c.machine_id, alarms.c.id)
    alarms.create(conn)


def _v3_watched_files(conn: Connection) -> None:
    """Files a folder watcher has finished: scored (``score_id``) or skipped (``skip_reason``).

    A file is identified by its watched folder, its path below it, its size and its mtime, so
    a rewritten file is a new recording; the unique key makes a second mark of one recording
    fail, which rolls back the score written in the same transaction."""
    md = MetaData()
    Table("scores", md, Column("id", Integer, primary_key=True))
    watched = Table(
        "watched_files",
        md,
        Column("id", Integer, primary_key=True),
        Column("root", String(4096), nullable=False),
        Column("path", String(4096), nullable=False),
        Column("size", Integer, nullable=False),
        Column("mtime_ns", Integer, nullable=False),
        Column("machine", String(64)),
        Column("score_id", Integer, ForeignKey("scores.id")),
        Column("skip_reason", String(1000)),
        Column("time", Float, nullable=False),
        UniqueConstraint("root", "path", "size", "mtime_ns", name="uq_watched_files_recording"),
        sqlite_autoincrement=True,
    )
    Index("ix_watched_files_time", watched.c.time)
    watched.create(conn)


def _v4_clips(conn: Connection) -> None:
    """Clip audio of recent scores (FLAC bytes), for the dashboard's player and pictures; pruned
    to the newest ``--keep-audio`` per machine. ``machine_id`` repeats the score's, so that
    pruning one machine reads only that machine's rows (index on machine, score)."""
    md = MetaData()
    Table("machines", md, Column("id", Integer, primary_key=True))
    Table("scores", md, Column("id", Integer, primary_key=True))
    clips = Table(
        "clips",
        md,
        Column("score_id", Integer, ForeignKey("scores.id"), primary_key=True, autoincrement=False),
        Column("machine_id", Integer, ForeignKey("machines.id"), nullable=False),
        Column("flac", LargeBinary, nullable=False),
    )
    Index("ix_clips_machine_id", clips.c.machine_id, clips.c.score_id)
    clips.create(conn)


def _v5_clip_bytes(conn: Connection) -> None:
    """Each kept clip's size in bytes, for the ``--keep-audio-mb`` budget, with an index on
    (score, bytes) so that the total and the oldest clips are read from the index alone (never
    from the rows, whose FLAC spans many pages)."""
    conn.execute(text("ALTER TABLE clips ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("UPDATE clips SET bytes = length(flac)"))
    conn.execute(text("CREATE INDEX ix_clips_bytes ON clips (score_id, bytes)"))


def _v6_notify_outbox(conn: Connection) -> None:
    """The notification outbox (`notify.outbox`): one row per message to one channel (MQTT, a
    webhook, e-mail), written in the transaction of the score or alarm it describes and marked
    delivered once the channel acknowledged it; ``delivery_id`` lets receivers drop duplicates."""
    md = MetaData()
    outbox = Table(
        "notify_outbox",
        md,
        Column("id", Integer, primary_key=True),
        Column("channel", String(100), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("topic", String(300), nullable=False),
        Column("delivery_id", String(64), nullable=False, unique=True),
        Column("payload", Text, nullable=False),
        Column("created", Float, nullable=False),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("next_attempt", Float, nullable=False),
        Column("delivered_at", Float),
        Column("last_error", String(500)),
        sqlite_autoincrement=True,
    )
    Index("ix_notify_outbox_due", outbox.c.channel, outbox.c.delivered_at, outbox.c.next_attempt)
    outbox.create(conn)


def _v7_operator_actions(conn: Connection) -> None:
    """What operators do, each with its author (the token's name) and time: acknowledgements of
    alarms (one per alarm), labels of events (normal after all, or confirmed fault; one per
    event, replaced by a later one), mutes of a machine for a time window (cancellable), and
    the audit log of every action, in order."""
    md = MetaData()
    Table("machines", md, Column("id", Integer, primary_key=True))
    Table("scores", md, Column("id", Integer, primary_key=True))
    Table("alarms", md, Column("id", Integer, primary_key=True))
    Table(
        "alarm_acks",
        md,
        Column("alarm_id", Integer, ForeignKey("alarms.id"), primary_key=True, autoincrement=False),
        Column("time", Float, nullable=False),
        Column("author", String(64), nullable=False),
        Column("note", String(1000), nullable=False),
    )
    labels = Table(
        "event_labels",
        md,
        Column("score_id", Integer, ForeignKey("scores.id"), primary_key=True, autoincrement=False),
        Column("machine_id", Integer, ForeignKey("machines.id"), nullable=False),
        Column("label", String(16), nullable=False),
        Column("time", Float, nullable=False),
        Column("author", String(64), nullable=False),
        Column("note", String(1000), nullable=False),
    )
    Index("ix_event_labels_machine", labels.c.machine_id, labels.c.label, labels.c.score_id)
    mutes = Table(
        "mutes",
        md,
        Column("id", Integer, primary_key=True),
        Column("machine_id", Integer, ForeignKey("machines.id"), nullable=False),
        Column("starts_at", Float, nullable=False),
        Column("ends_at", Float, nullable=False),
        Column("reason", String(1000), nullable=False),
        Column("author", String(64), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("cancelled_at", Float),
        Column("cancelled_by", String(64)),
        sqlite_autoincrement=True,
    )
    Index("ix_mutes_machine_ends", mutes.c.machine_id, mutes.c.ends_at)
    actions = Table(
        "operator_actions",
        md,
        Column("id", Integer, primary_key=True),
        Column("time", Float, nullable=False),
        Column("author", String(64), nullable=False),
        Column("action", String(16), nullable=False),
        Column("machine", String(64)),
        Column("target_id", Integer),
        Column("detail", String(2000), nullable=False),
        sqlite_autoincrement=True,
    )
    Index("ix_operator_actions_time", actions.c.time)
    md.create_all(conn)


MIGRATIONS: list[Migration] = [
    _v1_machines_models_scores,
    _v2_alarms,
    _v3_watched_files,
    _v4_clips,
    _v5_clip_bytes,
    _v6_notify_outbox,
    _v7_operator_actions,
]
LATEST = len(MIGRATIONS)


def schema_version(conn: Connection) -> int:
    """The version a database is at: 0 for an empty one."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    table = _version_table(MetaData())
    return int(
        conn.execute(select(table.c.version).order_by(table.c.version.desc()).limit(1)).scalar()
        or 0
    )


def migrate(
    engine: Engine, target: int = LATEST, say: Callable[[str], None] = lambda message: None
) -> int:
    """Bring the database to ``target`` (default: the latest), one transaction per step;
    returns the version it is at. A database newer than this code is refused, never touched.
    Each step re-reads the version inside its write transaction, so two processes opening one
    SQLite file at once apply every migration once."""
    if not 0 <= target <= LATEST:
        raise ConfigError(f"schema version {target} does not exist (latest is {LATEST})")
    table = _version_table(MetaData())
    while True:
        with writing(engine) as conn:
            version = schema_version(conn)
            if version > LATEST:
                raise ConfigError(
                    f"{engine.url.render_as_string(hide_password=True)}: "
                    "the event store is at schema "
                    f"version {version}, newer than this stethoscope knows ({LATEST}); upgrade it"
                )
            if version >= target:
                return version
            if version == 0:
                table.create(conn, checkfirst=True)
            MIGRATIONS[version](conn)
            conn.execute(table.insert().values(version=version + 1, applied_at=time.time()))
        say(f"event store: migrated to schema version {version + 1}")
