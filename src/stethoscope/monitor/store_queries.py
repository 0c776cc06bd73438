"""The read queries of the event store: scores with their machine and model, alarm episodes, and
machines with their counts; every read is bounded by `MAX_LIMIT` rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..errors import ConfigError
from .store_tables import ALARMS, MACHINES, MODELS, SCORES

MAX_LIMIT = 10_000


def event_query(*extra: Any) -> Any:
    """Scores joined with their machine's name and their model (system, version, threshold)."""
    return (
        select(
            SCORES.c.id,
            SCORES.c.time,
            MACHINES.c.name.label("machine"),
            SCORES.c.source,
            SCORES.c.score,
            SCORES.c.decision,
            MODELS.c.system,
            MODELS.c.version.label("model_version"),
            MODELS.c.threshold,
            *extra,
        )
        .join(MACHINES, MACHINES.c.id == SCORES.c.machine_id)
        .join(MODELS, MODELS.c.id == SCORES.c.model_id)
    )


def alarm_query(machine: str | None, active: bool | None) -> Any:
    """Alarm episodes with their machine's name, of one machine and/or only (in)active ones,
    newest first."""
    query = select(
        ALARMS.c.id,
        MACHINES.c.name.label("machine"),
        ALARMS.c.k,
        ALARMS.c.n,
        ALARMS.c.raised_at,
        ALARMS.c.raised_score_id,
        ALARMS.c.cleared_at,
        ALARMS.c.cleared_score_id,
    ).join(MACHINES, MACHINES.c.id == ALARMS.c.machine_id)
    if machine is not None:
        query = query.where(MACHINES.c.name == machine)
    if active is not None:
        query = query.where(
            ALARMS.c.cleared_at.is_(None) if active else ALARMS.c.cleared_at.is_not(None)
        )
    return query.order_by(ALARMS.c.id.desc())


def machine_query() -> Any:
    """Every machine with its alarm rule, score count and active alarm (or None), by name."""
    counts = (
        select(SCORES.c.machine_id, func.count().label("scores"))
        .group_by(SCORES.c.machine_id)
        .subquery()
    )
    active = (
        select(ALARMS.c.machine_id, ALARMS.c.id.label("active_alarm"))
        .where(ALARMS.c.cleared_at.is_(None))
        .subquery()
    )
    return (
        select(
            MACHINES.c.name,
            MACHINES.c.alarm_k,
            MACHINES.c.alarm_n,
            func.coalesce(counts.c.scores, 0).label("scores"),
            active.c.active_alarm,
        )
        .outerjoin(counts, counts.c.machine_id == MACHINES.c.id)
        .outerjoin(active, active.c.machine_id == MACHINES.c.id)
        .order_by(MACHINES.c.name)
    )


def checked_limit(limit: int) -> int:
    """``limit`` itself; a `ConfigError` unless it is between 1 and `MAX_LIMIT`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ConfigError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit
