"""The HTTP service (FastAPI): score clips, read the history and alarms, health and Prometheus
metrics, the PCM websocket (`streams`) and the dashboard (`views`). Built on `service.Monitor`;
started by ``stethoscope serve`` under uvicorn with its connection limits (`server`).

Security (`guard`): writes (``POST``/``PUT``) and the websocket need the bearer token unless the
server was started with ``--no-token``, and a browser's foreign ``Origin`` is refused (403);
reads need the token or the dashboard's login cookie with ``protect_reads`` (``serve`` sets it on
any address that is not loopback, unless ``--public-reads``); only the trusted ``Host`` names are
answered (400). Request bodies are limited (``Content-Length`` checked first, then the bytes
counted as they arrive: 413) and must arrive within ``body_timeout`` (408); only audio is
accepted, with an explicit Content-Type (415); bytes that do not decode get 422. Reads run in
their own small thread pool with a bounded queue (503 past it), so that readers never take a
scoring worker. No error answer carries a traceback, the database's location or a token.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyCookie, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from ..errors import AudioError, ConfigError, StethoscopeError
from . import schema
from .guard import COOKIE, Guard, TrustedHosts
from .metrics import Metrics, MetricsMiddleware
from .pictures import NotKept
from .routes_operator import add_operator_routes
from .service import Monitor, ScoreEvent, UnknownMachine
from .store import MAX_LIMIT, StoreError, check_alarm_rule
from .streams import MAX_STREAMS, MAX_WINDOW_S, MIN_HOP_S, STORE_DOWN, StreamSettings, add_stream
from .tokens import Tokens
from .views import MAX_ID, add_dashboard

__all__ = ["MAX_WINDOW_S", "MIN_HOP_S", "create_app"]
MAX_BODY_BYTES = 50 * 1024 * 1024
BODY_TIMEOUT_S = 60.0  # a posted body must arrive within this (a slow upload holds a connection)
READ_WORKERS = 2  # reads (events, pictures, audio) at once, in their own threads
READ_QUEUE = 64  # reads waiting beyond these get 503 at once
AUDIO_TYPES = ("audio/", "application/octet-stream")
log = logging.getLogger("stethoscope.serve")


class AlarmRule(BaseModel):
    k: int = Field(ge=1, le=1000, description="alarm when at least k ...")
    n: int = Field(ge=1, le=1000, description="... of the last n decisions are anomalous")


def _status(err: Exception) -> int:
    if isinstance(err, (UnknownMachine, NotKept)):
        return 404
    if isinstance(err, StoreError):
        return 503
    if isinstance(err, (AudioError, ConfigError)):
        return 422
    return 400


def _since(value: float | datetime | None) -> float | None:
    """``since`` as Unix seconds, from Unix seconds or an ISO 8601 time (UTC when it has no
    zone)."""
    if value is None or isinstance(value, float):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


SINCE = Query(None, description="Unix seconds, or an ISO 8601 time (UTC when it has no zone)")


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


def _validation_detail(err: RequestValidationError) -> str:
    """A request validation error as one sentence (every error body is ``{"detail": str}``)."""
    said = []
    for problem in err.errors()[:5]:
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "body"
        said.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "; ".join(said) or "invalid request"


def create_app(
    monitor: Monitor,
    token: str | Tokens | None,
    max_body: int = MAX_BODY_BYTES,
    workers: int = 2,
    protect_reads: bool = False,
    window: float = 10.0,
    hop: float = 1.0,
    allow_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] | None = None,
    max_streams: int = MAX_STREAMS,
    read_workers: int = READ_WORKERS,
    body_timeout: float = BODY_TIMEOUT_S,
    streams: StreamSettings | None = None,
) -> FastAPI:
    """The app serving ``monitor``; ``token=None`` means writes need no token (``--no-token``),
    a string is the one token (every scope), `Tokens` the named, scoped ones (``--tokens``).
    At most ``workers`` clips are decoded and scored at once (the rest wait their turn), and
    ``read_workers`` reads at once beside them. ``allowed_hosts`` (None: any) are the ``Host``
    names answered; ``allow_origins`` the browser origins allowed to write besides the app's own;
    ``streams`` overrides the websocket's limits (default: ``window``, ``hop``, ``max_streams``)."""
    metrics, guard = Metrics(monitor), Guard(token, allow_origins)
    limiter: list[anyio.CapacityLimiter] = []
    readers = Readers(read_workers, READ_QUEUE)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        del app
        limiter.append(anyio.CapacityLimiter(workers))
        yield

    app = FastAPI(
        title="stethoscope monitor",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHosts, allowed_hosts=list(allowed_hosts), www_redirect=False)
    app.state.monitor, app.state.metrics, app.state.guard = monitor, metrics, guard

    served = sorted(monitor.models)
    # the security schemes declare the token (and the read cookie) in the OpenAPI document;
    # guard checks them
    bearer_scheme = (
        [Depends(HTTPBearer(auto_error=False, description="the service's token"))] if token else []
    )
    cookie_scheme = [
        Depends(
            APIKeyCookie(
                name=COOKIE,
                auto_error=False,
                description="the dashboard's login cookie (POST /login)",
            )
        )
    ]
    read_guard = (
        [*bearer_scheme, *cookie_scheme, Depends(guard.need_reader)]
        if protect_reads and token
        else []
    )
    read_errors = schema.errors(400, 401, 503) if read_guard else schema.errors(400, 503)
    write_guard = [Depends(guard.same_origin), *bearer_scheme, Depends(guard.need_token)]

    async def scoring(call: Callable[[], Any]) -> Any:
        """Decode, score and record in a worker thread, at most ``workers`` at once."""
        return await anyio.to_thread.run_sync(call, limiter=limiter[0])

    async def blocking(call: Callable[[], Any]) -> Any:
        """A database write or health check in a thread (never waiting behind the scorers or
        readers)."""
        return await anyio.to_thread.run_sync(call)

    _add_error_handlers(app)
    routes = _Routes(monitor, served, read_guard, read_errors, write_guard, readers.run, blocking)
    _add_read_routes(app, routes, metrics)
    _add_score_routes(app, routes, metrics, scoring, max_body, body_timeout)
    add_dashboard(app, monitor, guard, read_guard, read_errors, readers.run)
    add_operator_routes(
        app,
        monitor,
        guard,
        [*bearer_scheme, *cookie_scheme],
        read_guard,
        read_errors,
        readers.run,
        blocking,
    )
    add_stream(
        app, monitor, guard, metrics, streams or StreamSettings(window, hop, max_streams), scoring
    )
    return app


@dataclass(frozen=True)
class _Routes:
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


def _add_error_handlers(app: FastAPI) -> None:
    """Every error body is ``{"detail": str}``: validation 422, stethoscope errors by kind (a
    store failure 503, its text for the log only), anything else 500 naming only its type."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        del request
        return JSONResponse({"detail": _validation_detail(err)}, status_code=422)

    @app.exception_handler(StethoscopeError)
    async def _known(request: Request, err: StethoscopeError) -> JSONResponse:
        if isinstance(
            err, StoreError
        ):  # its message names the database: for the log, not the client
            log.error("%s %s: %s", request.method, request.url.path, err)
            return JSONResponse({"detail": STORE_DOWN}, status_code=503)
        return JSONResponse({"detail": str(err)}, status_code=_status(err))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return JSONResponse(
            {"detail": f"internal error ({type(err).__name__}); the server log has the details"},
            status_code=500,
        )


def _add_read_routes(app: FastAPI, routes: _Routes, metrics: Metrics) -> None:
    """``/health``, ``/metrics``, ``/machines``, ``/events`` and ``/alarms``."""
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


def _add_score_routes(
    app: FastAPI,
    routes: _Routes,
    metrics: Metrics,
    scoring: Callable[[Callable[[], Any]], Awaitable[Any]],
    max_body: int,
    body_timeout: float,
) -> None:
    """The writes: ``PUT /machines/{machine}/alarm`` and ``POST /score`` (the body bounded in
    size and time before any decoding)."""
    monitor = routes.monitor

    @app.put(
        "/machines/{machine}/alarm",
        dependencies=routes.write_guard,
        response_model=schema.AlarmRuleSet,
        responses=schema.errors(400, 401, 403, 404, 422, 503),
    )
    async def set_alarm(
        rule: AlarmRule, machine: str = schema.machine_path(routes.served)
    ) -> JSONResponse:
        monitor.model(machine)
        check_alarm_rule(rule.k, rule.n)
        await routes.blocking(partial(monitor.store.set_alarm_rule, machine, rule.k, rule.n))
        return JSONResponse({"machine": machine, "k": rule.k, "n": rule.n})

    @app.post(
        "/score",
        dependencies=routes.write_guard,
        response_model=schema.ScoreEvent,
        openapi_extra=schema.AUDIO_BODY,
        responses=schema.errors(400, 401, 403, 404, 408, 413, 415, 422, 503),
    )
    async def score(
        request: Request,
        machine: str = schema.machine_query(routes.served, required=True),
        source: str = Query("", max_length=200),
        channel: int = Query(0, ge=0, le=255),
    ) -> JSONResponse:
        monitor.model(machine)  # 404/422 before the body is read
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not kind.startswith(AUDIO_TYPES):
            said = repr(kind[:60]) if kind else "none"
            raise HTTPException(
                415,
                f"the body must be one audio clip (WAV, FLAC, ...) sent as raw bytes with "
                f"Content-Type audio/* (e.g. audio/wav) or application/octet-stream, not {said}",
            )
        try:
            with anyio.fail_after(body_timeout):
                raw = await _read_body(request, max_body)
        except TimeoutError:
            raise HTTPException(408, f"the body did not arrive within {body_timeout:g} s") from None

        def score_and_record() -> ScoreEvent:
            with metrics.scoring.labels(machine).time():
                return monitor.score_clip(machine, raw, source, channel)

        event: ScoreEvent = await scoring(score_and_record)
        metrics.scored(machine, event.decision)
        return JSONResponse(event.as_json())


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes: by its
    declared length, or while its bytes arrive (chunked uploads declare none)."""
    declared = request.headers.get("content-length")
    too_big = HTTPException(
        413, f"body over the {limit // (1024 * 1024)} MB limit: send one clip per request"
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)
