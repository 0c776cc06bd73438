"""The dashboard's routes: the page and its two assets (package data, read once at start; a
request names one of three fixed files, never a path), and per event its kept audio, anomaly
map and spectrogram (``pictures``). The page loads nothing from anywhere but this app; its
Content-Security-Policy says so to the browser too. ``POST /login`` (the page's login form)
sets the login cookie of `guard`; ``POST /logout`` clears it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from . import schema
from .guard import COOKIE, SESSION_S, Guard
from .pictures import EventPictures, kept_audio
from .service import Monitor

MAX_ID = (
    2**63 - 1
)  # SQLite's largest integer: a larger id is refused (422) before it reaches the database
MAX_LOGIN_BYTES = 4096

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# no inline script or style, nothing from another origin; blob: is how the page shows fetched
# images and audio
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


def _asset(name: str, body: bytes) -> Response:
    return Response(
        body,
        media_type=ASSETS[name],
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


def add_dashboard(
    app: FastAPI,
    monitor: Monitor,
    guard: Guard,
    read_guard: list[Any],
    read_errors: dict[Any, Any],
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    """Add the dashboard's routes to ``app``. The page and its assets are open (they hold no
    data); the event routes follow ``read_guard`` like every read (``read_errors`` are their
    error answers). ``run`` runs blocking work (decoding, drawing) in the readers' threads."""
    folder = resources.files("stethoscope.monitor").joinpath("dashboard")
    _add_page(app, {name: folder.joinpath(name).read_bytes() for name in ASSETS})
    _add_login(app, guard)
    _add_event_media(app, monitor, read_guard, read_errors, run)


def _add_page(app: FastAPI, assets: dict[str, bytes]) -> None:
    """The page and its script and style sheet, from ``assets`` (read once at start)."""

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return _asset("index.html", assets["index.html"])

    @app.get("/dashboard/dashboard.js", include_in_schema=False)
    async def script() -> Response:
        return _asset("dashboard.js", assets["dashboard.js"])

    @app.get("/dashboard/dashboard.css", include_in_schema=False)
    async def style() -> Response:
        return _asset("dashboard.css", assets["dashboard.css"])


def _add_login(app: FastAPI, guard: Guard) -> None:
    """``POST /login`` (the login form's token for the login cookie) and ``POST /logout``."""

    @app.post(
        "/login",
        dependencies=[Depends(guard.same_origin)],
        status_code=204,
        openapi_extra=schema.LOGIN_BODY,
        responses={
            204: {"description": "logged in: the login cookie is set"},
            **schema.errors(400, 401, 403, 413, 415),
        },
    )
    async def login(request: Request) -> Response:
        """The login form's token (``application/x-www-form-urlencoded``) for a cookie that
        reads and, for a token of scope ``operate`` or ``write``, acts as an operator:
        ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site sends it)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise HTTPException(
                415, "send the login form (application/x-www-form-urlencoded: token=...)"
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BYTES:
                raise HTTPException(413, "the login form is too large")
        presented = parse_qs(body.decode("utf-8", "replace")).get("token", [None])[0]
        if guard.tokens is None:
            return Response(status_code=204)
        who = guard.identify(presented)
        if who is None:
            raise HTTPException(401, "wrong token")
        answer = Response(status_code=204)
        answer.set_cookie(
            COOKIE,
            guard.session(who.name),
            max_age=SESSION_S,
            path="/",
            httponly=True,
            samesite="strict",
        )
        return answer

    @app.post(
        "/logout",
        dependencies=[Depends(guard.same_origin)],
        status_code=204,
        responses={204: {"description": "the login cookie is cleared"}, **schema.errors(400, 403)},
    )
    async def logout() -> Response:
        """Clear the login cookie."""
        answer = Response(status_code=204)
        answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return answer


def _add_event_media(
    app: FastAPI,
    monitor: Monitor,
    read_guard: list[Any],
    read_errors: dict[Any, Any],
    run: Callable[[Callable[[], Any]], Any],
) -> None:
    """Per event: its kept audio (FLAC), anomaly map and spectrogram (PNG), like every read."""
    pictures = EventPictures(monitor)
    media: dict[str, dict[int | str, dict[str, Any]]] = {
        "audio": {200: {"content": schema.binary("audio/flac"), "description": "the kept clip"}},
        "png": {200: {"content": schema.binary("image/png"), "description": "the picture"}},
    }
    event_errors = {**read_errors, **schema.errors(404, 422)}

    @app.get(
        "/events/{event_id}/audio",
        dependencies=read_guard,
        responses={**media["audio"], **event_errors},
    )
    async def audio(event_id: int = PathParam(ge=0, le=MAX_ID)) -> Response:
        _, flac = await run(lambda: kept_audio(monitor, event_id))
        return Response(
            flac,
            media_type="audio/flac",
            headers={"Content-Disposition": f'inline; filename="event-{event_id}.flac"'},
        )

    @app.get(
        "/events/{event_id}/map.png",
        dependencies=read_guard,
        responses={**media["png"], **event_errors},
    )
    async def anomaly_map(event_id: int = PathParam(ge=0, le=MAX_ID)) -> Response:
        return Response(await run(lambda: pictures.png(event_id, "map")), media_type="image/png")

    @app.get(
        "/events/{event_id}/spectrogram.png",
        dependencies=read_guard,
        responses={**media["png"], **event_errors},
    )
    async def spectrogram(event_id: int = PathParam(ge=0, le=MAX_ID)) -> Response:
        return Response(
            await run(lambda: pictures.png(event_id, "spectrogram")), media_type="image/png"
        )
