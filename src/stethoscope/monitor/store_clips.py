"""Kept clip audio of the event store: each machine keeps the FLAC of its newest scores, and all
kept audio fits a byte budget; both are enforced inside the score's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select

from .store_tables import CLIPS


def keep_clip(conn: Any, machine_id: int, event_id: int, audio: bytes, keep: int) -> None:
    """Store one clip and delete the machine's clips older than its newest ``keep``."""
    conn.execute(
        CLIPS.insert().values(
            score_id=event_id, machine_id=machine_id, flac=audio, bytes=len(audio)
        )
    )
    oldest_kept = conn.execute(
        select(CLIPS.c.score_id)
        .where(CLIPS.c.machine_id == machine_id)
        .order_by(CLIPS.c.score_id.desc())
        .offset(keep - 1)
        .limit(1)
    ).scalar()
    if oldest_kept is not None:
        conn.execute(
            delete(CLIPS).where(CLIPS.c.machine_id == machine_id, CLIPS.c.score_id < oldest_kept)
        )


def fit_budget(conn: Any, budget: int) -> None:
    """Delete the oldest clips (any machine) until the kept audio is at most ``budget``
    bytes."""
    total = int(conn.execute(select(func.coalesce(func.sum(CLIPS.c.bytes), 0))).scalar())
    if total <= budget:
        return
    cutoff = None
    for score_id, size in conn.execute(
        select(CLIPS.c.score_id, CLIPS.c.bytes).order_by(CLIPS.c.score_id)
    ):
        total -= int(size)
        cutoff = score_id
        if total <= budget:
            break
    conn.execute(delete(CLIPS).where(CLIPS.c.score_id <= cutoff))
