"""The operator's routes: acknowledge an alarm, label an event, mute a machine and cancel a mute
(scope ``operate``: a bearer token, or the dashboard's login cookie of such a token, from this
service's own origin), and read mutes, labels and the audit log (like every read). Each action
is stored with its author, the token's name (`operators`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from . import schema
from .guard import Guard
from .operators import MAX_NOTE, ActionRefused
from .service import Monitor
from .store import MAX_LIMIT
from .tokens import NAME, Identity
from .views import MAX_ID

Seconds = Annotated[float, Field(ge=0, le=1e11)]


def _note() -> Any:
    return Field("", max_length=MAX_NOTE, description="free text (at most 1000 characters)")


class AckBody(BaseModel):
    note: str = _note()


class LabelBody(BaseModel):
    label: Literal["normal", "fault"] = Field(description="normal after all, or confirmed fault")
    note: str = _note()


class MuteBody(BaseModel):
    end: Seconds | datetime = Field(
        description="Unix seconds, or an ISO 8601 time (UTC when it has no zone)"
    )
    start: Seconds | datetime | None = Field(None, description="as end; default now")
    reason: str = Field(
        min_length=1, max_length=MAX_NOTE, description="why (e.g. maintenance, cleaning shift)"
    )


class Acknowledgement(BaseModel):
    alarm_id: int
    machine: str
    time: float
    author: str
    note: str


class Label(BaseModel):
    event_id: int
    machine: str
    label: str
    time: float
    author: str
    note: str


class Mute(BaseModel):
    id: int
    machine: str
    starts_at: float
    ends_at: float
    reason: str
    author: str
    created_at: float
    cancelled_at: float | None
    cancelled_by: str | None


class Action(BaseModel):
    id: int
    time: float
    author: str
    action: str = Field(description="ack, label, mute or unmute")
    machine: str | None
    target_id: int | None = Field(description="the alarm, event or mute acted on")
    detail: dict[str, Any]


def _seconds(value: float | datetime | None) -> float | None:
    if value is None or isinstance(value, float):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def _id(what: str) -> Any:
    return PathParam(ge=0, le=MAX_ID, description=f"the {what}'s id")


def add_operator_routes(
    app: FastAPI,
    monitor: Monitor,
    guard: Guard,
    security: list[Any],
    read_guard: list[Any],
    read_errors: dict[Any, Any],
    read: Callable[[Callable[[], Any]], Any],
    write: Callable[[Callable[[], Any]], Any],
) -> None:
    """Add the routes to ``app``: actions need ``operate`` (``security`` declares the token and
    cookie in the OpenAPI document), reads follow ``read_guard``; ``read`` and ``write`` run
    blocking store calls in threads."""
    refused: dict[int | str, dict[str, Any]] = {
        409: {"model": schema.Detail, "description": "done already, or over"}
    }
    kit = _Kit(
        monitor,
        sorted(monitor.models),
        [Depends(guard.same_origin), *security],
        {**schema.errors(400, 401, 403, 404, 422, 503), **refused},
        Depends(guard.need_operator),
        read_guard,
        {**read_errors, **schema.errors(404, 422)},
        read,
        write,
    )

    @app.exception_handler(ActionRefused)
    async def _refused(request: Request, err: ActionRefused) -> JSONResponse:
        del request
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    _add_alarm_and_event_actions(app, kit)
    _add_mute_actions(app, kit)
    _add_operator_reads(app, kit)


@dataclass(frozen=True)
class _Kit:
    """What the operator's route groups share: the monitor and its served machines, the
    actions' dependencies (same origin, token schemes; ``operator`` resolves the author) and
    errors, the reads' guard and errors, and the threads for store reads and writes."""

    monitor: Monitor
    served: list[str]
    acting: list[Any]
    act_errors: dict[int | str, dict[str, Any]]
    operator: Any
    read_guard: list[Any]
    list_errors: dict[Any, Any]
    read: Callable[[Callable[[], Any]], Any]
    write: Callable[[Callable[[], Any]], Any]


def _add_alarm_and_event_actions(app: FastAPI, kit: _Kit) -> None:
    """``POST /alarms/{alarm_id}/ack`` and ``POST /events/{event_id}/label``."""
    ops, write, operator = kit.monitor.operators, kit.write, kit.operator

    @app.post(
        "/alarms/{alarm_id}/ack",
        dependencies=kit.acting,
        response_model=Acknowledgement,
        responses=kit.act_errors,
    )
    async def acknowledge(
        body: AckBody, alarm_id: int = _id("alarm"), who: Identity = operator
    ) -> JSONResponse:
        """Acknowledge an alarm (once) with a note; stored with its author."""
        return JSONResponse(await write(lambda: ops.acknowledge(alarm_id, who.name, body.note)))

    @app.post(
        "/events/{event_id}/label",
        dependencies=kit.acting,
        response_model=Label,
        responses=kit.act_errors,
    )
    async def label(
        body: LabelBody, event_id: int = _id("event"), who: Identity = operator
    ) -> JSONResponse:
        """Label an event "normal" (after all) or "fault" (confirmed); a later label replaces it."""
        return JSONResponse(
            await write(lambda: ops.label(event_id, body.label, who.name, body.note))
        )


def _add_mute_actions(app: FastAPI, kit: _Kit) -> None:
    """``POST /machines/{machine}/mutes`` and ``POST /mutes/{mute_id}/cancel``."""
    monitor, ops, write, operator = kit.monitor, kit.monitor.operators, kit.write, kit.operator

    @app.post(
        "/machines/{machine}/mutes",
        dependencies=kit.acting,
        response_model=Mute,
        status_code=201,
        responses=kit.act_errors,
    )
    async def mute(
        body: MuteBody, machine: str = schema.machine_path(kit.served), who: Identity = operator
    ) -> JSONResponse:
        """Mute a machine from ``start`` (default now) to ``end``: its clips are still scored and
        stored, but no alarm is raised while the mute lasts."""
        monitor.model(machine)
        start, end = _seconds(body.start), _seconds(body.end)
        assert end is not None
        return JSONResponse(
            await write(lambda: ops.mute(machine, start, end, body.reason, who.name)),
            status_code=201,
        )

    @app.post(
        "/mutes/{mute_id}/cancel",
        dependencies=kit.acting,
        response_model=Mute,
        responses=kit.act_errors,
    )
    async def cancel(mute_id: int = _id("mute"), who: Identity = operator) -> JSONResponse:
        """End a mute now."""
        return JSONResponse(await write(lambda: ops.cancel_mute(mute_id, who.name)))


def _add_operator_reads(app: FastAPI, kit: _Kit) -> None:
    """``GET /mutes``, ``/labels`` and ``/actions`` (the audit log), like every read."""
    monitor, ops, read = kit.monitor, kit.monitor.operators, kit.read

    @app.get(
        "/mutes", dependencies=kit.read_guard, response_model=list[Mute], responses=kit.list_errors
    )
    async def mutes(
        machine: str | None = schema.machine_query(kit.served),
        current: bool | None = Query(None, description="true: in force or to come; false: over"),
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
    ) -> JSONResponse:
        if machine is not None:
            monitor.model(machine)
        return JSONResponse(await read(lambda: ops.mutes(machine, current, limit)))

    @app.get(
        "/labels",
        dependencies=kit.read_guard,
        response_model=list[Label],
        responses=kit.list_errors,
    )
    async def labels(
        machine: str | None = schema.machine_query(kit.served),
        label: Literal["normal", "fault"] | None = None,
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
    ) -> JSONResponse:
        if machine is not None:
            monitor.model(machine)
        return JSONResponse(await read(lambda: ops.labels(machine, label, limit)))

    @app.get(
        "/actions",
        dependencies=kit.read_guard,
        response_model=list[Action],
        responses=kit.list_errors,
    )
    async def actions(
        machine: str | None = schema.machine_query(kit.served),
        author: str | None = Query(None, pattern=f"^{NAME.pattern}$"),
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
    ) -> JSONResponse:
        """The audit log: every operator action, newest first, with its author and time."""
        if machine is not None:
            monitor.model(machine)
        return JSONResponse(await read(lambda: ops.actions(machine, author, limit)))
