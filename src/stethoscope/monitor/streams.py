"""The websocket ``/stream/{machine}``: PCM frames in, one JSON message per scored hop out.

Bounded: at most ``max_streams`` open at once (503 past it); a browser's foreign ``Origin`` is
refused (403); the token comes in the ``Authorization`` header or as the first message
(``{"token": "..."}``, within `AUTH_TIMEOUT_S`), never in the URL; frames are at most the
server's ``ws_max_size`` (uvicorn closes with 1009 past it); a frame may complete at most
`MAX_WINDOWS_PER_FRAME` windows and a stream is paced to `MAX_WINDOWS_PER_S` scored windows per
wall-clock second; a stream with no frame for `IDLE_TIMEOUT_S` is closed; a window holds at most
`MAX_WINDOW_SAMPLES` samples. Each event keeps only the audio new to it: the first event of a
stream its whole window, every later one its hop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from ..errors import ConfigError, StethoscopeError
from ..realtime import StreamingScorer
from .guard import NO_TOKEN, Guard, bearer
from .metrics import Metrics
from .service import Monitor, ScoreEvent, UnknownMachine
from .store import StoreError

MIN_HOP_S, MAX_WINDOW_S = 0.1, 600.0
MAX_WINDOW_SAMPLES = 600 * 16_000  # 600 s at 16 kHz, 50 s at 192 kHz: bounds a stream's buffer
MAX_WINDOWS_PER_FRAME = 20
MAX_WINDOWS_PER_S = 20
AUTH_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 60.0
MAX_STREAMS = 16
PCM_FORMATS: dict[str, np.dtype[Any]] = {"f32": np.dtype("<f4"), "s16": np.dtype("<i2")}
STORE_DOWN = "the event store is unavailable; the server log has the details"
log = logging.getLogger("stethoscope.serve")


@dataclass
class StreamSettings:
    """The defaults and limits of ``/stream`` (``serve --window --hop --max-streams``)."""

    window: float = 10.0
    hop: float = 1.0
    max_streams: int = MAX_STREAMS
    per_frame: int = MAX_WINDOWS_PER_FRAME
    per_second: float = MAX_WINDOWS_PER_S
    idle_timeout: float = IDLE_TIMEOUT_S
    auth_timeout: float = AUTH_TIMEOUT_S


class Pacer:
    """A token bucket: `take` waits until ``n`` windows fit in ``rate`` per second."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.last = rate, rate, time.monotonic()

    async def take(self, n: int) -> None:
        """Wait until ``n`` (at most ``rate``) windows may be scored, then spend them."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= n:
                self.tokens -= n
                return
            await asyncio.sleep((n - self.tokens) / self.rate)


def check_stream(params: Any, window: float, hop: float) -> tuple[str, int, float, float]:
    """The stream's PCM format, rate, window and hop from its query, or a `ConfigError`."""
    kind = params.get("format", "f32")
    if kind not in PCM_FORMATS:
        raise ConfigError(f"format must be one of {', '.join(PCM_FORMATS)}, got {kind[:20]!r}")
    rate = params.get("rate", "16000")
    if not rate.isdigit() or not 8000 <= int(rate) <= 192_000:
        raise ConfigError(f"rate must be whole Hz between 8000 and 192000, got {rate[:20]!r}")
    try:
        seconds = float(params.get("window", window)), float(params.get("hop", hop))
    except ValueError as err:
        raise ConfigError(f"window and hop must be seconds ({str(err)[:60]})") from None
    if not MIN_HOP_S <= seconds[1] <= seconds[0] <= MAX_WINDOW_S:
        raise ConfigError(
            f"need {MIN_HOP_S:g} <= hop <= window <= {MAX_WINDOW_S:g} seconds, got window "
            f"{seconds[0]:g} and hop {seconds[1]:g}"
        )
    if seconds[0] * int(rate) > MAX_WINDOW_SAMPLES:
        raise ConfigError(
            f"a window of {seconds[0]:g} s at {rate} Hz is over {MAX_WINDOW_SAMPLES:,} samples; "
            f"use a shorter window or a lower rate"
        )
    return kind, int(rate), *seconds


def add_stream(
    app: FastAPI,
    monitor: Monitor,
    guard: Guard,
    metrics: Metrics,
    settings: StreamSettings,
    scoring: Callable[[Callable[[], Any]], Any],
) -> None:
    """Add ``/stream/{machine}`` to ``app`` (see the module docstring)."""
    open_streams = [0]

    @app.websocket("/stream/{machine}")
    async def stream(ws: WebSocket, machine: str) -> None:
        refused = refusal(ws, guard)
        if refused is not None:
            await deny(ws, *refused)
            return
        try:
            kind, rate, window, hop = check_stream(ws.query_params, settings.window, settings.hop)
            source = ws.query_params.get("source", "stream")
            scorer = monitor.stream(machine, rate, window, hop)
        except StethoscopeError as err:
            await deny(ws, 404 if isinstance(err, UnknownMachine) else 422, str(err))
            return
        if open_streams[0] >= settings.max_streams:
            await deny(
                ws,
                503,
                f"{settings.max_streams} streams are open, the most this service takes "
                f"(serve --max-streams); try again later",
            )
            return
        open_streams[0] += 1
        metrics.streams.inc()
        try:
            await ws.accept()
            if (
                bearer(ws.headers.get("authorization")) is None
                and guard.tokens is not None
                and not await first_message_auth(ws, guard, settings)
            ):
                return
            await pump(
                ws,
                monitor,
                metrics,
                machine,
                scorer,
                PCM_FORMATS[kind],
                rate,
                source,
                scoring,
                settings,
            )
        except WebSocketDisconnect:
            pass
        finally:
            open_streams[0] -= 1
            metrics.streams.dec()


def refusal(ws: WebSocket, guard: Guard) -> tuple[int, str] | None:
    """Why a stream may not open, as (HTTP status, detail), from its ``Origin`` and the token
    in its headers or URL; None when it may (a missing token may still come as its first
    message, `first_message_auth`)."""
    if not guard.origin_ok(ws.headers.get("origin"), ws.headers.get("host")):
        return 403, "this origin may not open a stream here; serve --allow-origin adds one"
    if "token" in ws.query_params or "access_token" in ws.query_params:
        return (
            401,
            "a token in the URL is refused (URLs end up in logs): send 'Authorization: "
            'Bearer <token>\' or the first message {"token": "..."}',
        )
    presented = bearer(ws.headers.get("authorization"))
    if presented is not None and not guard.token_ok(presented):
        if guard.identify(presented) is not None:  # a token whose scope does not stream
            return 403, "streams need a token with the 'write' scope"
        return 401, NO_TOKEN
    return None


async def first_message_auth(ws: WebSocket, guard: Guard, settings: StreamSettings) -> bool:
    """A browser cannot set headers on a websocket: its first message must then be the token,
    ``{"token": "..."}``, within ``auth_timeout`` seconds. False (and closed, 1008) otherwise."""
    try:
        message = await asyncio.wait_for(ws.receive(), settings.auth_timeout)
    except asyncio.TimeoutError:
        await fail(ws, f"no token within {settings.auth_timeout:g} s: " + NO_TOKEN, 1008)
        return False
    text = message.get("text")
    try:
        presented = json.loads(text).get("token") if text else None
    except (ValueError, AttributeError):
        presented = None
    if message["type"] == "websocket.disconnect":
        return False
    if not isinstance(presented, str) or not guard.token_ok(presented):
        await fail(ws, NO_TOKEN + ' or the first message {"token": "..."}', 1008)
        return False
    return True


async def deny(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse a websocket before accepting it: an HTTP answer where the server supports that,
    else a close (which the client sees as HTTP 403)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        await ws.close(code=1008, reason=detail[:120])


async def pump(
    ws: WebSocket,
    monitor: Monitor,
    metrics: Metrics,
    machine: str,
    scorer: StreamingScorer,
    dtype: np.dtype,
    rate: int,
    source: str,
    scoring: Callable[[Callable[[], Any]], Any],
    settings: StreamSettings,
) -> None:
    """Binary PCM frames in; for each hop completed, one JSON message out (after its score, and
    its new audio where audio is kept, is committed). Bad frames end the stream with a message
    and close code 1007; a frame completing too many windows, or silence, with 1008."""
    scale = 1.0 / 32768.0 if dtype.kind == "i" else 1.0
    pacer, first = Pacer(settings.per_second), [True]
    while True:
        data = await next_frame(ws, dtype, settings)
        if data is None:
            return
        windows = scorer.windows_completed_by(len(data) // dtype.itemsize)
        if windows > settings.per_frame:
            await fail(
                ws,
                f"a frame completing {windows} windows is over the {settings.per_frame} per frame "
                f"this service scores: send smaller frames",
                1008,
            )
            return
        await pacer.take(windows)
        samples = np.frombuffer(data, dtype=dtype).astype(np.float32) * scale
        try:
            events = await scoring(
                partial(score_and_record, monitor, scorer, machine, source, rate, first, samples)
            )
        except StoreError as err:
            log.error("stream %s: %s", machine, err)
            await fail(ws, STORE_DOWN)
            return
        except (ValueError, StethoscopeError) as err:
            await fail(ws, str(err))
            return
        for event, end in events:
            metrics.scored(machine, event.decision)
            await ws.send_text(json.dumps({**event.as_json(), "end_seconds": end}))


async def next_frame(ws: WebSocket, dtype: np.dtype, settings: StreamSettings) -> bytes | None:
    """The stream's next binary frame of whole samples (text frames, e.g. keep-alives, carry no
    audio and are passed over); None when the stream is over: the client left, or it was
    closed here for silence (1008) or a frame of partial samples (1007)."""
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), settings.idle_timeout)
        except asyncio.TimeoutError:
            await fail(ws, f"no frame for {settings.idle_timeout:g} s; closed", 1008)
            return None
        if message["type"] == "websocket.disconnect":
            return None
        data = message.get("bytes")
        if data is None:
            continue  # text frames (e.g. keep-alives) carry no audio
        if len(data) % dtype.itemsize:
            await fail(
                ws, f"a frame of {len(data)} bytes is not whole {dtype.itemsize}-byte samples"
            )
            return None
        return data


def score_and_record(
    monitor: Monitor,
    scorer: StreamingScorer,
    machine: str,
    source: str,
    rate: int,
    first: list[bool],
    chunk: np.ndarray,
) -> list[tuple[ScoreEvent, float]]:
    """Push ``chunk`` into the stream's scorer and record every window it completes, each
    with the audio new to it (the whole window for the stream's first, else its hop); (event,
    end in stream seconds) for each. Runs in a scoring worker thread."""
    done = []
    for s in scorer.push(chunk):
        new = s.window if first[0] or s.window is None else s.window[len(s.window) - scorer.hop :]
        first[0] = False
        done.append(
            (
                monitor.record(
                    machine,
                    s.score,
                    s.decision,
                    source,
                    audio=monitor.audio_to_keep(new, rate),
                ),
                s.end_seconds,
            )
        )
    return done


async def fail(ws: WebSocket, detail: str, code: int = 1007) -> None:
    """Say what went wrong in one message, then close with ``code``."""
    await ws.send_text(json.dumps({"error": detail}))
    await ws.close(code=code, reason=detail[:120])
