"""The alarm rule of the event store: an alarm is raised by the score that makes at least ``k``
of its machine's last ``n`` decisions anomalous, and cleared by the score that makes fewer than
``k`` anomalous; `update_alarm` applies it inside the score's own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from ..errors import ConfigError
from .store_tables import ALARMS, SCORES


@dataclass(frozen=True)
class AlarmChange:
    """What a score did to its machine's alarm: ``state`` is "raised", "active" or "cleared"."""

    id: int
    state: str


def check_alarm_rule(k: int, n: int) -> None:
    if not 1 <= k <= n <= 1000:
        raise ConfigError(
            f"alarm rule must be k of the last n decisions with 1 <= k <= n <= 1000, got {k} of {n}"
        )


def update_alarm(
    conn: Any,
    machine_id: int,
    k: int,
    n: int,
    event_id: int,
    now: float,
    raise_alarm: bool = True,
) -> AlarmChange | None:
    """Raise, keep or clear the machine's alarm for the score ``event_id`` just inserted;
    ``raise_alarm`` False (a muted machine) raises no new alarm."""
    last = (
        select(SCORES.c.decision)
        .where(SCORES.c.machine_id == machine_id)
        .order_by(SCORES.c.id.desc())
        .limit(n)
        .subquery()
    )
    anomalous = int(conn.execute(select(func.coalesce(func.sum(last.c.decision), 0))).scalar())
    active = conn.execute(
        select(ALARMS.c.id).where(ALARMS.c.machine_id == machine_id, ALARMS.c.cleared_at.is_(None))
    ).scalar()
    if active is None and anomalous >= k and raise_alarm:
        alarm_id = conn.execute(
            ALARMS.insert().values(
                machine_id=machine_id, k=k, n=n, raised_at=now, raised_score_id=event_id
            )
        ).inserted_primary_key[0]
        return AlarmChange(int(alarm_id), "raised")
    if active is not None and anomalous < k:
        conn.execute(
            update(ALARMS)
            .where(ALARMS.c.id == active)
            .values(cleared_at=now, cleared_score_id=event_id)
        )
        return AlarmChange(int(active), "cleared")
    return AlarmChange(int(active), "active") if active is not None else None
