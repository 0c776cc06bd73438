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
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyCookie, HTTPBearer

from ..errors import AudioError, ConfigError, StethoscopeError
from . import schema
from .guard import COOKIE, Guard, TrustedHosts
from .metrics import Metrics, MetricsMiddleware
from .pictures import NotKept
from .routes_operator import add_operator_routes
from .routes_read import Readers, Routes, add_read_routes
from .routes_score import add_score_routes
from .service import Monitor, UnknownMachine
from .store import StoreError
from .streams import MAX_STREAMS, MAX_WINDOW_S, MIN_HOP_S, STORE_DOWN, StreamSettings, add_stream
from .tokens import Tokens
from .views import add_dashboard

__all__ = ["MAX_WINDOW_S", "MIN_HOP_S", "Readers", "create_app"]
MAX_BODY_BYTES = 50 * 1024 * 1024
BODY_TIMEOUT_S = 60.0  # a posted body must arrive within this (a slow upload holds a connection)
READ_WORKERS = 2  # reads (events, pictures, audio) at once, in their own threads
READ_QUEUE = 64  # reads waiting beyond these get 503 at once
log = logging.getLogger("stethoscope.serve")


def _status(err: Exception) -> int:
    if isinstance(err, (UnknownMachine, NotKept)):
        return 404
    if isinstance(err, StoreError):
        return 503
    if isinstance(err, (AudioError, ConfigError)):
        return 422
    return 400


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
    app = _new_app(workers, limiter, metrics, allowed_hosts)
    app.state.monitor, app.state.metrics, app.state.guard = monitor, metrics, guard
    guards = _Guards.of(guard, bool(token), protect_reads)

    async def scoring(call: Callable[[], Any]) -> Any:
        """Decode, score and record in a worker thread, at most ``workers`` at once."""
        return await anyio.to_thread.run_sync(call, limiter=limiter[0])

    async def blocking(call: Callable[[], Any]) -> Any:
        """A database write or health check in a thread (never waiting behind the scorers or
        readers)."""
        return await anyio.to_thread.run_sync(call)

    _add_error_handlers(app)
    served = sorted(monitor.models)
    read_guard, read_errors = guards.read, guards.read_errors
    routes = Routes(monitor, served, read_guard, read_errors, guards.write, readers.run, blocking)
    add_read_routes(app, routes, metrics)
    add_score_routes(app, routes, metrics, scoring, max_body, body_timeout)
    add_dashboard(app, monitor, guard, read_guard, read_errors, readers.run)
    add_operator_routes(
        app, monitor, guard, guards.schemes, read_guard, read_errors, readers.run, blocking
    )
    add_stream(
        app, monitor, guard, metrics, streams or StreamSettings(window, hop, max_streams), scoring
    )
    return app


def _new_app(
    workers: int,
    limiter: list[anyio.CapacityLimiter],
    metrics: Metrics,
    allowed_hosts: Sequence[str] | None,
) -> FastAPI:
    """The bare app: its lifespan makes the scorers' limiter (``workers`` at once) in the
    running event loop, its metrics middleware counts every request, and only
    ``allowed_hosts`` (None: any) are answered."""

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
    return app


@dataclass(frozen=True)
class _Guards:
    """The routes' dependencies: ``schemes`` declare the token (and the read cookie) in the
    OpenAPI document, ``read`` and ``write`` are what `guard.Guard` checks, and ``read_errors``
    the answers a guarded read adds to the schema."""

    schemes: list[Any]
    read: list[Any]
    read_errors: dict[int | str, dict[str, Any]]
    write: list[Any]

    @classmethod
    def of(cls, guard: Guard, token: bool, protect_reads: bool) -> _Guards:
        bearer_scheme = (
            [Depends(HTTPBearer(auto_error=False, description="the service's token"))]
            if token
            else []
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
        return cls([*bearer_scheme, *cookie_scheme], read_guard, read_errors, write_guard)


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
