"""The service's writes besides the operators': ``PUT /machines/{machine}/alarm`` and
``POST /score`` (one audio clip, its body bounded in size and time before any decoding)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from . import schema
from .metrics import Metrics
from .routes_read import Routes
from .service import ScoreEvent
from .store import check_alarm_rule

AUDIO_TYPES = ("audio/", "application/octet-stream")


class AlarmRule(BaseModel):
    k: int = Field(ge=1, le=1000, description="alarm when at least k ...")
    n: int = Field(ge=1, le=1000, description="... of the last n decisions are anomalous")


def add_score_routes(
    app: FastAPI,
    routes: Routes,
    metrics: Metrics,
    scoring: Callable[[Callable[[], Any]], Awaitable[Any]],
    max_body: int,
    body_timeout: float,
) -> None:
    """The writes: ``PUT /machines/{machine}/alarm`` and ``POST /score`` (the body bounded in
    size and time before any decoding)."""
    _add_alarm_rule_route(app, routes)
    _add_score_route(app, routes, metrics, scoring, max_body, body_timeout)


def _add_alarm_rule_route(app: FastAPI, routes: Routes) -> None:
    """``PUT /machines/{machine}/alarm``: a machine's k-of-n alarm rule."""
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


def _add_score_route(
    app: FastAPI,
    routes: Routes,
    metrics: Metrics,
    scoring: Callable[[Callable[[], Any]], Awaitable[Any]],
    max_body: int,
    body_timeout: float,
) -> None:
    """``POST /score``: one clip, scored for its machine and recorded before the answer."""
    monitor = routes.monitor

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
