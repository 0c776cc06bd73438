"""The persistent outbox: messages waiting for a channel, in the event store itself.

A message is one row of ``notify_outbox`` (schema: `migrations._v6_notify_outbox`), inserted
in the transaction that commits the score or alarm it describes (`EventStore.record_score`'s
``also``), so a killed process loses none. A channel's dispatcher *claims* due rows (moves their
``next_attempt`` a lease ahead, in a write transaction, so another process sharing the store
does not send them too), delivers them, and marks them delivered, or failed with a backoff
(1 s doubling up to the channel's ``retry_max_s``). A claim that dies with its process expires
after the lease and the rows are sent again: at-least-once, each with a ``delivery_id`` that
receivers use to drop duplicates. The claims, marks and pruning commit without an fsync
(`EventStore.transaction` with ``durable=False``): a power cut that loses one only sends a message
again or sooner, and the next durable commit (a score's) makes them durable anyway.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from ..store import EventStore, StoreError

OUTBOX = Table(
    "notify_outbox",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("channel", String(100)),
    Column("kind", String(16)),
    Column("topic", String(300)),
    Column("delivery_id", String(64)),
    Column("payload", Text),
    Column("created", Float),
    Column("attempts", Integer),
    Column("next_attempt", Float),
    Column("delivered_at", Float),
    Column("last_error", String(500)),
)
FIRST_RETRY_S = 1.0


@dataclass(frozen=True)
class Message:
    """One claimed row: where it goes and what it says (``payload`` is JSON text)."""

    id: int
    channel: str
    kind: str
    topic: str
    delivery_id: str
    payload: str
    attempts: int

    @property
    def body(self) -> dict[str, Any]:
        return dict(json.loads(self.payload))


def new_delivery_id() -> str:
    """A fresh message id (random, so ids from different stores never collide)."""
    return uuid.uuid4().hex


def add(
    conn: Connection, channel: str, kind: str, topic: str, payload: dict[str, Any], now: float
) -> None:
    """Insert one message for ``channel`` in the caller's transaction; ``payload`` gets its
    ``delivery_id``."""
    delivery_id = new_delivery_id()
    conn.execute(
        OUTBOX.insert().values(
            channel=channel,
            kind=kind,
            topic=topic,
            delivery_id=delivery_id,
            created=now,
            attempts=0,
            next_attempt=now,
            payload=json.dumps({"delivery_id": delivery_id, **payload}, separators=(",", ":")),
        )
    )


def claim(
    store: EventStore, channel: str, limit: int, lease_s: float, ordered: bool = False
) -> list[Message]:
    """Up to ``limit`` due messages of ``channel``, oldest first, leased for ``lease_s``. With
    ``ordered``, none newer than an undelivered message that is not due (failed and waiting, or
    leased): they go out strictly in order (MQTT's retained alarm state must end at the last)."""
    now = time.time()
    pending = and_(OUTBOX.c.channel == channel, OUTBOX.c.delivered_at.is_(None))
    with store.transaction(durable=False) as conn:
        query = select(
            OUTBOX.c.id,
            OUTBOX.c.channel,
            OUTBOX.c.kind,
            OUTBOX.c.topic,
            OUTBOX.c.delivery_id,
            OUTBOX.c.payload,
            OUTBOX.c.attempts,
        ).where(pending, OUTBOX.c.next_attempt <= now)
        if ordered:
            blocked = conn.execute(
                select(func.min(OUTBOX.c.id)).where(pending, OUTBOX.c.next_attempt > now)
            ).scalar()
            if blocked is not None:
                query = query.where(OUTBOX.c.id < blocked)
        rows = conn.execute(query.order_by(OUTBOX.c.id).limit(limit)).all()
        if rows:
            conn.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id.in_([r.id for r in rows]))
                .values(next_attempt=now + lease_s)
            )
    return [Message(*row) for row in rows]


def backoff(attempts: int, cap: float) -> float:
    """Seconds before try ``attempts + 1``: 1 s doubling per failed try, at most ``cap``."""
    return float(min(cap, FIRST_RETRY_S * 2 ** min(attempts, 30)))


def settle(
    store: EventStore, delivered: list[int], failed: dict[int, tuple[int, str]], cap: float
) -> None:
    """Mark ``delivered`` ids delivered, and each failed id (its attempts so far, the error) due
    again after its `backoff`, in one transaction."""
    now = time.time()
    with store.transaction(durable=False) as conn:
        if delivered:
            conn.execute(update(OUTBOX).where(OUTBOX.c.id.in_(delivered)).values(delivered_at=now))
        for row_id, (attempts, error) in failed.items():
            conn.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == row_id)
                .values(
                    attempts=attempts + 1,
                    next_attempt=now + backoff(attempts, cap),
                    last_error=error[:500],
                )
            )


def prune(store: EventStore, channel: str, keep_delivered_s: float, max_pending_scores: int) -> int:
    """Delete ``channel``'s rows delivered more than ``keep_delivered_s`` ago, and its oldest
    pending *score* messages past the newest ``max_pending_scores`` (alarm messages are never
    dropped); returns how many pending score messages were dropped."""
    with store.transaction(durable=False) as conn:
        conn.execute(
            delete(OUTBOX).where(
                OUTBOX.c.channel == channel, OUTBOX.c.delivered_at < time.time() - keep_delivered_s
            )
        )
        pending = and_(
            OUTBOX.c.channel == channel, OUTBOX.c.delivered_at.is_(None), OUTBOX.c.kind == "score"
        )
        cutoff = conn.execute(
            select(OUTBOX.c.id)
            .where(pending)
            .order_by(OUTBOX.c.id.desc())
            .offset(max_pending_scores)
            .limit(1)
        ).scalar()
        if cutoff is None:
            return 0
        return int(conn.execute(delete(OUTBOX).where(pending, OUTBOX.c.id <= cutoff)).rowcount or 0)


def backlog(store: EventStore, channels: list[str]) -> dict[str, dict[str, Any]]:
    """{channel: {"pending": n, "oldest_s": age of the oldest undelivered message or None}}."""
    out: dict[str, dict[str, Any]] = {c: {"pending": 0, "oldest_s": None} for c in channels}
    now = time.time()
    query = (
        select(
            OUTBOX.c.channel, func.count().label("n"), func.min(OUTBOX.c.created).label("oldest")
        )
        .where(OUTBOX.c.delivered_at.is_(None), OUTBOX.c.channel.in_(channels))
        .group_by(OUTBOX.c.channel)
    )
    for row in _read(store, query):
        out[row["channel"]] = {
            "pending": int(row["n"]),
            "oldest_s": round(now - float(row["oldest"]), 3),
        }
    return out


def messages(store: EventStore, channel: str | None = None) -> list[dict[str, Any]]:
    """Every row (of ``channel``), oldest first: for tests and inspection."""
    query = select(OUTBOX)
    if channel is not None:
        query = query.where(OUTBOX.c.channel == channel)
    return _read(store, query.order_by(OUTBOX.c.id))


def _read(store: EventStore, query: Any) -> list[dict[str, Any]]:
    try:
        with store.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]
    except SQLAlchemyError as err:
        raise StoreError(f"event store {store.where}: {getattr(err, 'orig', None) or err}") from err
