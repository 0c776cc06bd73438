"""What the HTTP API answers, as OpenAPI declares it: the bodies of every route (pydantic
models, for the document only: the routes build their JSON themselves) and every status code a
route can give, so that a client generated from ``/openapi.json`` understands each answer.
Every error body is ``{"detail": "<one sentence>"}``, request validation errors included.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

MACHINE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Detail(BaseModel):
    """Every error answer: one sentence saying what is wrong (never a traceback, path or token)."""

    detail: str


class AlarmChange(BaseModel):
    id: int
    state: str = Field(description="raised, active or cleared")


class ScoreEvent(BaseModel):
    """A scored clip, as ``POST /score`` answers it."""

    id: int
    time: float
    machine: str
    source: str
    score: float
    decision: int
    threshold: float
    system: str
    model_version: str
    alarm: AlarmChange | None
    warnings: list[str]
    anomaly: bool
    muted: bool = Field(description="the machine is muted: scored and stored, no alarm raised")


class Event(BaseModel):
    """A stored score, as ``/events`` lists it."""

    id: int
    time: float
    machine: str
    source: str | None
    score: float
    decision: int
    system: str
    model_version: str
    threshold: float


class AlarmAck(BaseModel):
    time: float
    author: str
    note: str


class Alarm(BaseModel):
    id: int
    machine: str
    k: int
    n: int
    raised_at: float
    raised_score_id: int
    cleared_at: float | None
    cleared_score_id: int | None
    active: bool
    ack: AlarmAck | None = Field(None, description="its acknowledgement: when, by whom, the note")


class Machine(BaseModel):
    machine: str
    system: str
    model_version: str
    threshold: float
    alarm_k: int | None
    alarm_n: int | None
    scores: int
    active_alarm: int | None


class AlarmRuleSet(BaseModel):
    machine: str
    k: int
    n: int


class ChannelBacklog(BaseModel):
    """One notification channel's outbox (``--notify``)."""

    pending: int
    oldest_s: float | None = Field(
        None, description="age of the oldest undelivered message, seconds"
    )
    failing: bool = Field(False, description="the last delivery try failed (the log says why)")


class Health(BaseModel):
    """ok (200), degraded or error (503)."""

    status: str
    machines: list[str] | None = None
    schema_version: int | None = None
    detail: str | None = None
    notify: dict[str, ChannelBacklog] | None = Field(
        None, description="with --notify: the outbox per channel"
    )


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error ``codes``, each a `Detail` body."""
    said = {
        400: "bad Host header",
        401: "missing or wrong token",
        403: "a foreign Origin, or a token whose scope does not allow this",
        404: "no such machine or event, or its audio is not kept",
        408: "the body did not arrive in time",
        413: "body too large",
        415: "not an audio Content-Type",
        422: "invalid parameters, or audio that cannot be used",
        503: "busy, or the event store is unavailable",
    }
    return {code: {"model": Detail, "description": said[code]} for code in codes}


def binary(*types: str) -> dict[str, Any]:
    """An OpenAPI content map of binary bodies of ``types``."""
    return {kind: {"schema": {"type": "string", "format": "binary"}} for kind in types}


LOGIN_BODY = {
    "requestBody": {
        "required": True,
        "description": "the dashboard's login form",
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {"token": {"type": "string"}},
                }
            }
        },
    }
}
AUDIO_BODY = {
    "requestBody": {
        "required": True,
        "description": "one clip (WAV, FLAC, ...) as raw bytes",
        "content": binary("audio/wav", "audio/flac", "application/octet-stream"),
    }
}


def machine_query(served: list[str], required: bool = False) -> Any:
    """The ``machine`` query parameter: one of the ``served`` machines (another name, 404;
    one that cannot be a machine name, 422)."""
    from fastapi import Query

    return Query(
        ... if required else None,
        pattern=MACHINE_PATTERN,
        description="a served machine's name",
        json_schema_extra={"enum": served},
    )


def machine_path(served: list[str]) -> Any:
    """The ``{machine}`` path parameter (see `machine_query`)."""
    from fastapi import Path

    return Path(
        pattern=MACHINE_PATTERN,
        description="a served machine's name",
        json_schema_extra={"enum": served},
    )
