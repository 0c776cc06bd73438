"""The HTTP service (FastAPI): score clips, read the history and alarms, stream PCM over a
websocket, health and Prometheus metrics, and the dashboard (`views`). Built on
`service.Monitor`; started by ``stethoscope serve``.

Security: writes (``POST``/``PUT``) and the websocket need the bearer token unless the server
was started with ``--no-token``; reads need it with ``protect_reads`` (``serve`` sets it on any
address that is not loopback, unless ``--public-reads``). Error bodies, ``/health`` included,
never carry the database's location or a token (`StoreError` details go to the log). Request bodies are limited
(``Content-Length`` checked first, then the bytes counted as they arrive: 413), only audio is
accepted (415 for another content type, 422 for bytes that do not decode), and no error answer
carries a traceback: unexpected errors answer 500 with a one-line message, the log has the rest.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable

import anyio
import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from ..errors import AudioError, ConfigError, StethoscopeError
from ..realtime import StreamingScorer
from .metrics import Metrics, MetricsMiddleware
from .pictures import NotKept
from .service import Monitor, ScoreEvent, UnknownMachine
from .store import MAX_LIMIT, StoreError, check_alarm_rule
from .views import MAX_ID, add_dashboard

MAX_BODY_BYTES = 50 * 1024 * 1024
STORE_DOWN = "the event store is unavailable; the server log has the details"
AUDIO_TYPES = ("audio/", "application/octet-stream")
MIN_HOP_S, MAX_WINDOW_S = 0.1, 600.0  # a stream costs at most 10 scores per second of audio
PCM_FORMATS = {"f32": np.dtype("<f4"), "s16": np.dtype("<i2")}
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


def _since(value: str | None) -> float | None:
    """``since`` as Unix seconds, from Unix seconds or an ISO 8601 time (UTC when it has no zone)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise ConfigError(f"since={value[:40]!r} is neither Unix seconds nor an ISO 8601 time") from err
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _bearer(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def create_app(monitor: Monitor, token: str | None, max_body: int = MAX_BODY_BYTES, workers: int = 2,
               protect_reads: bool = False, window: float = 10.0, hop: float = 1.0) -> FastAPI:
    """The app serving ``monitor``; ``token=None`` means writes need no token (``--no-token``).
    At most ``workers`` clips are decoded and scored at once (the rest wait their turn)."""
    metrics = Metrics(monitor)
    limiter: list[anyio.CapacityLimiter] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        del app
        limiter.append(anyio.CapacityLimiter(workers))
        yield

    app = FastAPI(title="stethoscope monitor", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json")
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.monitor, app.state.metrics = monitor, metrics

    def authorised(presented: str | None) -> bool:
        return token is None or (presented is not None and hmac.compare_digest(presented.encode(), token.encode()))

    def need_token(request: Request) -> None:
        if not authorised(_bearer(request.headers.get("authorization"))):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    read_guard = [Depends(need_token)] if protect_reads else []

    async def scoring(call: Callable[[], Any]) -> Any:
        """Decode, score and record in a worker thread, at most ``workers`` at once."""
        return await anyio.to_thread.run_sync(call, limiter=limiter[0])

    async def blocking(call: Callable[[], Any]) -> Any:
        """A database read or write in a thread (never waiting behind the scorers)."""
        return await anyio.to_thread.run_sync(call)

    @app.exception_handler(StethoscopeError)
    async def _known(request: Request, err: StethoscopeError) -> JSONResponse:
        if isinstance(err, StoreError):  # its message names the database: for the log, not the client
            log.error("%s %s: %s", request.method, request.url.path, err)
            return JSONResponse({"detail": STORE_DOWN}, status_code=503)
        return JSONResponse({"detail": str(err)}, status_code=_status(err))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return JSONResponse({"detail": f"internal error ({type(err).__name__}); the server log has the details"},
                            status_code=500)

    @app.get("/health")
    async def health() -> JSONResponse:
        """ok; degraded (503) while writes to the store fail; error (503) when it does not answer.
        Never the database's path or the error text (those go to the log)."""
        try:
            await blocking(monitor.store.ping)
        except StoreError as err:
            log.error("health: %s", err)
            return JSONResponse({"status": "error", "detail": STORE_DOWN}, status_code=503)
        state = monitor.health
        if state.degraded:
            since = datetime.fromtimestamp(state.failing_since or 0, timezone.utc).isoformat(timespec="seconds")
            return JSONResponse({"status": "degraded", "machines": sorted(monitor.models),
                                 "detail": f"writes to the event store fail since {since} ({state.failures} "
                                           f"failure(s)); scores are refused with 503 until a write succeeds"},
                                status_code=503)
        return JSONResponse({"status": "ok", "machines": sorted(monitor.models),
                             "schema_version": monitor.store.version})

    @app.get("/metrics", dependencies=read_guard)
    async def prometheus() -> Response:
        body = await blocking(partial(generate_latest, metrics.registry))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/machines", dependencies=read_guard)
    async def machines() -> JSONResponse:
        return JSONResponse(await blocking(monitor.describe))

    @app.put("/machines/{machine}/alarm", dependencies=[Depends(need_token)])
    async def set_alarm(machine: str, rule: AlarmRule) -> JSONResponse:
        monitor.model(machine)
        check_alarm_rule(rule.k, rule.n)
        await blocking(partial(monitor.store.set_alarm_rule, machine, rule.k, rule.n))
        return JSONResponse({"machine": machine, "k": rule.k, "n": rule.n})

    @app.post("/score", dependencies=[Depends(need_token)])
    async def score(request: Request, machine: str = Query(...), source: str = Query("", max_length=200),
                    channel: int = Query(0, ge=0, le=255)) -> JSONResponse:
        monitor.model(machine)  # 404/422 before the body is read
        kind = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
        if not kind.startswith(AUDIO_TYPES):
            raise HTTPException(415, f"the body must be one audio clip (WAV, FLAC, ...) sent as raw bytes with "
                                     f"Content-Type audio/* or application/octet-stream, not {kind[:60]!r}")
        raw = await _read_body(request, max_body)
        def score_and_record() -> ScoreEvent:
            with metrics.scoring.labels(machine).time():
                return monitor.score_clip(machine, raw, source, channel)

        event: ScoreEvent = await scoring(score_and_record)
        metrics.scored(machine, event.decision)
        return JSONResponse(event.as_json())

    @app.get("/events", dependencies=read_guard)
    async def events(machine: str | None = None, since: str | None = None,
                     after_id: int | None = Query(None, ge=0, le=MAX_ID),
                     limit: int = Query(100, ge=1, le=MAX_LIMIT),
                     order: str = Query("desc", pattern="^(asc|desc)$")) -> JSONResponse:
        if machine is not None:
            monitor.model(machine)
        return JSONResponse(await blocking(partial(monitor.store.events, machine, _since(since), after_id, limit,
                                                    order == "desc")))

    @app.get("/alarms", dependencies=read_guard)
    async def alarms(machine: str | None = None, active: bool | None = None,
                     limit: int = Query(100, ge=1, le=MAX_LIMIT)) -> JSONResponse:
        if machine is not None:
            monitor.model(machine)
        return JSONResponse(await blocking(partial(monitor.store.alarms, machine, active, limit)))

    add_dashboard(app, monitor, read_guard, scoring)

    @app.websocket("/stream/{machine}")
    async def stream(ws: WebSocket, machine: str) -> None:
        presented = _bearer(ws.headers.get("authorization")) or ws.query_params.get("token")
        if not authorised(presented):
            await _deny(ws, 401, "missing or wrong token: send 'Authorization: Bearer <token>' or ?token=")
            return
        try:
            params = ws.query_params
            kind = params.get("format", "f32")
            if kind not in PCM_FORMATS:
                raise ConfigError(f"format must be one of {', '.join(PCM_FORMATS)}, got {kind[:20]!r}")
            rate = params.get("rate", "16000")
            if not rate.isdigit() or not 8000 <= int(rate) <= 192_000:
                raise ConfigError(f"rate must be whole Hz between 8000 and 192000, got {rate[:20]!r}")
            source = params.get("source", "stream")
            seconds = float(params.get("window", window)), float(params.get("hop", hop))
            if not MIN_HOP_S <= seconds[1] <= seconds[0] <= MAX_WINDOW_S:
                raise ConfigError(f"need {MIN_HOP_S:g} <= hop <= window <= {MAX_WINDOW_S:g} seconds, got window "
                                  f"{seconds[0]:g} and hop {seconds[1]:g}")
            scorer = monitor.stream(machine, int(rate), *seconds)
        except ValueError as err:
            await _deny(ws, 422, f"window and hop must be seconds ({err})")
            return
        except StethoscopeError as err:
            await _deny(ws, _status(err), str(err))
            return
        await ws.accept()
        metrics.streams.inc()
        try:
            await _pump(ws, monitor, metrics, machine, scorer, PCM_FORMATS[kind], int(rate), source, scoring)
        except WebSocketDisconnect:
            pass
        finally:
            metrics.streams.dec()

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes: by its
    declared length, or while its bytes arrive (chunked uploads declare none)."""
    declared = request.headers.get("content-length")
    too_big = HTTPException(413, f"body over the {limit // (1024 * 1024)} MB limit: send one clip per request")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def _deny(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse a websocket before accepting it: an HTTP answer where the server supports that,
    else a close (which the client sees as HTTP 403)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        await ws.close(code=1008, reason=detail[:120])


async def _pump(ws: WebSocket, monitor: Monitor, metrics: Metrics, machine: str, scorer: StreamingScorer,
                dtype: np.dtype, rate: int, source: str, scoring: Callable[[Callable[[], Any]], Any]) -> None:
    """Binary PCM frames in; for each hop completed, one JSON message out (after its score, and
    the window's audio where audio is kept, is committed). Bad frames end the stream with a
    message and close code 1007."""
    scale = 1.0 / 32768.0 if dtype.kind == "i" else 1.0
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            continue  # text frames (e.g. keep-alives) carry no audio
        if len(data) % dtype.itemsize:
            await _fail(ws, f"a frame of {len(data)} bytes is not whole {dtype.itemsize}-byte samples")
            return
        samples = np.frombuffer(data, dtype=dtype).astype(np.float32) * scale

        def score_and_record(chunk: np.ndarray) -> list[tuple[ScoreEvent, float]]:
            return [(monitor.record(machine, s.score, s.decision, source,
                                    audio=monitor.audio_to_keep(s.window, rate)), s.end_seconds)
                    for s in scorer.push(chunk)]

        try:
            events = await scoring(partial(score_and_record, samples))
        except StoreError as err:
            log.error("stream %s: %s", machine, err)
            await _fail(ws, STORE_DOWN)
            return
        except (ValueError, StethoscopeError) as err:
            await _fail(ws, str(err))
            return
        for event, end in events:
            metrics.scored(machine, event.decision)
            await ws.send_text(json.dumps({**event.as_json(), "end_seconds": end}))
        await asyncio.sleep(0)


async def _fail(ws: WebSocket, detail: str) -> None:
    await ws.send_text(json.dumps({"error": detail}))
    await ws.close(code=1007, reason=detail[:120])
