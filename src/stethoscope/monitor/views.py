"""The dashboard's routes: the page and its two assets (package data, read once at start; a
request names one of three fixed files, never a path), and per event its kept audio, anomaly
map and spectrogram (``pictures``). The page loads nothing from anywhere but this app; its
Content-Security-Policy says so to the browser too.
"""
from __future__ import annotations

from importlib import resources
from typing import Any, Callable

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import Response

from .pictures import EventPictures, kept_audio

MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id is refused (422) before it reaches the database
from .service import Monitor

ASSETS = {"index.html": "text/html; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8",
          "dashboard.css": "text/css; charset=utf-8"}
# no inline script or style, nothing from another origin; blob: is how the page shows fetched images and audio
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _asset(name: str, body: bytes) -> Response:
    return Response(body, media_type=ASSETS[name], headers={"Content-Security-Policy": CSP,
                                                            "X-Content-Type-Options": "nosniff",
                                                            "Cache-Control": "no-cache"})


def add_dashboard(app: FastAPI, monitor: Monitor, read_guard: list[Any],
                  run: Callable[[Callable[[], Any]], Any]) -> None:
    """Add the dashboard's routes to ``app``. The page and its assets are open (they hold no
    data); the event routes follow ``read_guard`` like every read. ``run`` runs blocking work
    (decoding, drawing) off the event loop, at most as many at once as scorings."""
    folder = resources.files("stethoscope.monitor").joinpath("dashboard")
    assets = {name: folder.joinpath(name).read_bytes() for name in ASSETS}
    pictures = EventPictures(monitor)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return _asset("index.html", assets["index.html"])

    @app.get("/dashboard/dashboard.js", include_in_schema=False)
    async def script() -> Response:
        return _asset("dashboard.js", assets["dashboard.js"])

    @app.get("/dashboard/dashboard.css", include_in_schema=False)
    async def style() -> Response:
        return _asset("dashboard.css", assets["dashboard.css"])

    @app.get("/events/{event_id}/audio", dependencies=read_guard)
    async def audio(event_id: int = PathParam(ge=0, le=MAX_ID)) -> Response:
        _, flac = await run(lambda: kept_audio(monitor, event_id))
        return Response(flac, media_type="audio/flac",
                        headers={"Content-Disposition": f'inline; filename="event-{event_id}.flac"'})

    @app.get("/events/{event_id}/map.png", dependencies=read_guard)
    async def anomaly_map(event_id: int = PathParam(ge=0, le=MAX_ID)) -> Response:
        return Response(await run(lambda: pictures.png(event_id, "map")), media_type="image/png")

    @app.get("/events/{event_id}/spectrogram.png", dependencies=read_guard)
    async def spectrogram(event_id: int = PathParam(ge=0, le=MAX_ID)) -> Response:
        return Response(await run(lambda: pictures.png(event_id, "spectrogram")), media_type="image/png")
