"""The service's read routes: ``/health``, ``/metrics``, ``/machines``, ``/events`` and
``/alarms``, with what every route group shares (`Routes`) and the readers' own thread pool
(`Readers`: reads never take a scoring worker, and past a bounded queue they get 503)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import schema
from .metrics import Metrics
from .service import Monitor
from .store import MAX_LIMIT, StoreError
from .streams import STORE_DOWN
from .views import MAX_ID

log = logging.getLogger("stethoscope.serve")
SINCE = Query(None, description="Unix seconds, or an ISO 8601 time (UTC when it has no zone)")


@dataclass(frozen=True)
class Routes:
    """What the route groups share: the monitor, its served machines, the read and write
    guards (and the errors they add to the schema), the readers' pool, and the thread for
    database writes and health checks."""

    monitor: Monitor
    served: list[str]
    read_guard: list[Any]
    read_errors: dict[int | str, dict[str, Any]]
    write_guard: list[Any]
    read: Callable[[Callable[[], Any]], Awaitable[Any]]
    blocking: Callable[[Callable[[], Any]], Awaitable[Any]]


class Readers:
    """Reads run here: ``capacity`` threads of their own (never a scoring worker), at most
    ``queue`` more waiting; past that a read gets 503 at once instead of holding a connection."""

    def __init__(self, capacity: int, queue: int) -> None:
        self.capacity, self.queue, self.waiting = capacity, queue, 0
        self.limiter: anyio.CapacityLimiter | None = None

    async def run(self, call: Callable[[], Any]) -> Any:
        """``call()`` in a reader thread, or 503 when too many reads wait."""
        if self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.capacity)
        if self.waiting >= self.capacity + self.queue:
            raise HTTPException(
                503, "too many reads at once; try again shortly", headers={"Retry-After": "1"}
            )
        self.waiting += 1
        try:
            return await anyio.to_thread.run_sync(call, limiter=self.limiter)
        finally:
            self.waiting -= 1


def _since(value: float | datetime | None) -> float | None:
    """``since`` as Unix seconds, from Unix seconds or an ISO 8601 time (UTC when it has no
    zone)."""
    if value is None or isinstance(value, float):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


SINCE = Query(None, description="Unix seconds, or an ISO 8601 time (UTC when it has no zone)")


def add_read_routes(app: FastAPI, routes: Routes, metrics: Metrics) -> None:
    """``/health``, ``/metrics``, ``/machines``, ``/events`` and ``/alarms``."""
    _add_health(app, routes)
    _add_machine_routes(app, routes, metrics)
    _add_history_routes(app, routes)


def _add_health(app: FastAPI, routes: Routes) -> None:
    """``/health``: open to all (no token), and never naming the database or its error."""
    monitor = routes.monitor

    @app.get(
        "/health",
        response_model=schema.Health,
        responses={
            400: routes.read_errors[400],
            503: {"model": schema.Health, "description": "degraded or error"},
        },
    )
    async def health() -> JSONResponse:
        """ok; degraded (503) while writes to the store fail; error (503) when it does not answer.
        Never the database's path or the error text (those go to the log)."""
        try:
            await routes.blocking(monitor.store.ping)
        except StoreError as err:
            log.error("health: %s", err)
            return JSONResponse({"status": "error", "detail": STORE_DOWN}, status_code=503)
        state = monitor.health
        if state.degraded:
            since = datetime.fromtimestamp(state.failing_since or 0, timezone.utc).isoformat(
                timespec="seconds"
            )
            return JSONResponse(
                {
                    "status": "degraded",
                    "machines": sorted(monitor.models),
                    "detail": f"writes to the event store fail since {since} ({state.failures} "
                    f"failure(s)); scores are refused with 503 until a write succeeds",
                },
                status_code=503,
            )
        answer = {
            "status": "ok",
            "machines": sorted(monitor.models),
            "schema_version": monitor.store.version,
        }
        if (
            monitor.notifier is not None
        ):  # the outbox backlog per channel (--notify); never an error text
            answer["notify"] = await routes.blocking(monitor.notifier.backlog)
        return JSONResponse(answer)


def _add_machine_routes(app: FastAPI, routes: Routes, metrics: Metrics) -> None:
    """``/metrics`` (Prometheus text) and ``/machines`` (the served models and their alarms)."""
    monitor = routes.monitor

    @app.get(
        "/metrics",
        dependencies=routes.read_guard,
        responses={
            200: {
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "description": "Prometheus text format",
            },
            **routes.read_errors,
        },
    )
    async def prometheus() -> Response:
        body = await routes.read(partial(generate_latest, metrics.registry))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/machines",
        dependencies=routes.read_guard,
        response_model=list[schema.Machine],
        responses=routes.read_errors,
    )
    async def machines() -> JSONResponse:
        return JSONResponse(await routes.read(monitor.describe))


def _add_history_routes(app: FastAPI, routes: Routes) -> None:
    """``/events`` (scores, filtered and paged) and ``/alarms`` (episodes with their acks)."""
    monitor = routes.monitor

    @app.get(
        "/events",
        dependencies=routes.read_guard,
        response_model=list[schema.Event],
        responses={**routes.read_errors, **schema.errors(404, 422)},
    )
    async def events(
        machine: str | None = schema.machine_query(routes.served),
        since: float | datetime | None = SINCE,
        after_id: int | None = Query(None, ge=0, le=MAX_ID),
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
        order: str = Query("desc", pattern="^(asc|desc)$"),
    ) -> JSONResponse:
        if machine is not None:
            monitor.model(machine)
        return JSONResponse(
            await routes.read(
                partial(
                    monitor.store.events, machine, _since(since), after_id, limit, order == "desc"
                )
            )
        )

    @app.get(
        "/alarms",
        dependencies=routes.read_guard,
        response_model=list[schema.Alarm],
        responses={**routes.read_errors, **schema.errors(404, 422)},
    )
    async def alarms(
        machine: str | None = schema.machine_query(routes.served),
        active: bool | None = None,
        limit: int = Query(100, ge=1, le=MAX_LIMIT),
    ) -> JSONResponse:
        if machine is not None:
            monitor.model(machine)

        def listed() -> list[dict[str, Any]]:
            rows = monitor.store.alarms(machine, active, limit)
            acks = monitor.operators.acks([row["id"] for row in rows])
            return [{**row, "ack": acks.get(row["id"])} for row in rows]

        return JSONResponse(await routes.read(listed))
