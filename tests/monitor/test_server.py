"""Bounded clients, for real: the app under uvicorn (``monitor.server.config``, as ``serve``
runs it) on a loopback port, with small limits so that each one is reached in a second or two:
headers that never complete, a body that never arrives, too many connections, too many streams,
oversized websocket frames, a frame completing too many windows, pacing, idle streams."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from stethoscope.monitor.app import create_app
from stethoscope.monitor.server import Limits, config
from stethoscope.monitor.streams import StreamSettings

from .conftest import AUTH, TOKEN, fan_clip, free_port, wav_bytes

LIMITS = Limits(
    max_connections=8,
    header_timeout=1.0,
    keep_alive=1,
    max_header_bytes=4096,
    ws_max_bytes=64 * 1024,
)
STREAMS = StreamSettings(
    window=1.0,
    hop=0.1,
    max_streams=2,
    per_frame=20,
    per_second=20,
    idle_timeout=1.5,
    auth_timeout=1.0,
)


@contextmanager
def serving(app: Any, limits: Limits = LIMITS) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(config(app, "127.0.0.1", port, limits, quiet=True))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def url(monitor) -> Iterator[str]:
    app = create_app(
        monitor, TOKEN, workers=1, body_timeout=1.0, streams=STREAMS, allowed_hosts=["127.0.0.1"]
    )
    with serving(app) as where:
        yield where


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed ``sock`` (reading whatever it answered)."""
    start = time.monotonic()
    sock.settimeout(seconds)
    while sock.recv(4096):
        pass
    return time.monotonic() - start


def test_slow_or_huge_headers_are_cut_off(url: str) -> None:
    host, port = url.split(":")
    with socket.create_connection((host, int(port))) as silent:  # says nothing at all
        assert _closed_within(silent, 5) < 3
    with socket.create_connection(
        (host, int(port))
    ) as slow:  # slowloris: a byte now and then, never done
        start = time.monotonic()
        with pytest.raises(OSError):
            for byte in b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
                slow.sendall(bytes([byte]))
                time.sleep(0.2)
        assert time.monotonic() - start < 3
    with socket.create_connection((host, int(port))) as huge:
        huge.sendall(
            b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 8192
        )  # still unfinished
        said = huge.recv(100)
        assert said.startswith(b"HTTP/1.1 400"), said
    assert httpx.get(f"http://{url}/health").status_code == 200  # and the service goes on


def test_a_body_that_does_not_arrive_gets_408(url: str) -> None:
    host, port = url.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            "POST /score?machine=fan HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
            f"Content-Type: audio/wav\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"RIFF"
        )
        answer = sock.recv(1000)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer


def test_connections_past_the_limit_get_503(monitor) -> None:
    with serving(create_app(monitor, TOKEN), Limits(max_connections=8, header_timeout=30)) as url:
        host, port = url.split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(8)]
        try:
            time.sleep(0.2)
            busy = httpx.get(f"http://{url}/health")
            assert (
                busy.status_code == 503
            )  # uvicorn's own answer (plain text "Service Unavailable")
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        assert httpx.get(f"http://{url}/health").status_code == 200


def test_streams_are_capped_and_frames_bounded(url: str) -> None:
    base = f"ws://{url}/stream/fan"
    with connect(base, additional_headers=AUTH), connect(base, additional_headers=AUTH):
        with pytest.raises(InvalidStatus) as full:
            connect(base, additional_headers=AUTH)
        assert (
            full.value.response.status_code == 503
            and b"streams are open" in full.value.response.body
        )
    with connect(
        base, additional_headers=AUTH
    ) as ws:  # over the server's frame limit: closed by uvicorn, 1009
        ws.send(np.zeros(32 * 1024, "<f4").tobytes())
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009
    with connect(
        base, additional_headers=AUTH
    ) as ws:  # a frame under the limit (62.5 KiB) is scored
        ws.send(np.zeros(16_000, "<f4").tobytes())
        assert "score" in json.loads(ws.recv(timeout=30))


def test_a_frame_completing_too_many_windows_is_refused(monitor) -> None:
    app = create_app(
        monitor, TOKEN, streams=StreamSettings(window=1.0, hop=0.1, per_frame=5, per_second=100)
    )
    with (
        serving(app, Limits()) as where,
        connect(f"ws://{where}/stream/fan", additional_headers=AUTH) as ws,
    ):
        ws.send(np.zeros(19_200, "<f4").tobytes())  # 1.2 s: 3 windows
        assert len([ws.recv(timeout=30) for _ in range(3)]) == 3
        ws.send(np.zeros(16_000, "<f4").tobytes())  # 1 s more: 10 windows in one frame
        assert "10 windows is over the 5 per frame" in json.loads(ws.recv(timeout=30))["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1008


def test_streams_are_paced_and_idle_ones_closed(url: str) -> None:
    with connect(f"ws://{url}/stream/fan", additional_headers=AUTH) as ws:
        start = time.monotonic()
        for _ in range(
            5
        ):  # 5 frames of 1 s at a 0.1 s hop: 1 + 4 x 10 windows, at most 20 per second
            ws.send(np.zeros(16_000, "<f4").tobytes())
        got = [json.loads(ws.recv(timeout=30)) for _ in range(41)]
        assert time.monotonic() - start >= 0.9 and all("score" in g for g in got)
        with pytest.raises(ConnectionClosed):
            while True:  # no frame for 1.5 s: told, then closed
                message = json.loads(ws.recv(timeout=10))
                assert "no frame for 1.5 s" in message["error"]
    with connect(f"ws://{url}/stream/fan") as ws:  # no header and no token message within 1 s
        assert "no token within 1 s" in json.loads(ws.recv(timeout=10))["error"]


def test_posting_still_works_under_these_limits(url: str) -> None:
    answer = httpx.post(
        f"http://{url}/score",
        params={"machine": "fan"},
        content=wav_bytes(fan_clip(0)),
        headers={**AUTH, "Content-Type": "audio/wav"},
        timeout=30,
    )
    assert answer.status_code == 200


def test_reads_past_their_queue_are_told_busy_at_once() -> None:
    import anyio
    from fastapi import HTTPException

    from stethoscope.monitor.app import Readers

    readers, outcomes = Readers(capacity=1, queue=2), []

    async def one() -> None:
        try:
            await readers.run(lambda: time.sleep(0.3))
            outcomes.append(200)
        except HTTPException as err:
            outcomes.append(err.status_code)

    async def many() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(6):
                group.start_soon(one)

    start = time.monotonic()
    anyio.run(many)
    assert sorted(outcomes) == [200, 200, 200, 503, 503, 503] and time.monotonic() - start < 2
