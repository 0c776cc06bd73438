"""Browser safety against a real ``stethoscope serve`` on loopback: a foreign ``Origin`` may not
write or stream, another ``Host`` is not answered, POST /score wants an audio Content-Type even
with --no-token, and no token reaches uvicorn's log, even one a client put in a URL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from stethoscope.monitor.guard import Guard, trusted_hosts
from stethoscope.monitor.tokens import Identity

from .conftest import AUTH, TOKEN, Server, fan_clip, wav_bytes

FOREIGN = "http://evil.example"
ALLOWED = "https://plant-console.example:8443"


@pytest.fixture(scope="module")
def guarded(models_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("guard")
    srv = Server(
        models_dir,
        tmp / "events.db",
        tmp / "serve.log",
        ["--allow-origin", ALLOWED, "--allowed-host", "monitor.plant.local"],
    ).start()
    yield srv
    srv.stop()


def _score(server: Server, headers: dict) -> httpx.Response:
    return httpx.post(
        f"{server.url}/score",
        params={"machine": "fan"},
        content=wav_bytes(fan_clip(1)),
        headers={"Content-Type": "audio/wav", **AUTH, **headers},
        timeout=30,
    )


def test_a_foreign_origin_may_not_write_or_stream(guarded: Server) -> None:
    own = f"http://127.0.0.1:{guarded.port}"
    refused = _score(guarded, {"Origin": FOREIGN})
    assert refused.status_code == 403 and "origin" in refused.json()["detail"]
    assert _score(guarded, {"Origin": "null"}).status_code == 403
    assert (
        httpx.put(
            f"{guarded.url}/machines/fan/alarm",
            json={"k": 1, "n": 1},
            headers={**AUTH, "Origin": FOREIGN},
        ).status_code
        == 403
    )
    assert _score(guarded, {"Origin": own}).status_code == 200  # the dashboard's own page
    assert _score(guarded, {"Origin": ALLOWED}).status_code == 200  # --allow-origin
    assert _score(guarded, {}).status_code == 200  # no Origin: not a browser (curl, recorders)
    assert (
        httpx.post(
            f"{guarded.url}/login", data={"token": TOKEN}, headers={"Origin": FOREIGN}
        ).status_code
        == 403
    )
    with pytest.raises(InvalidStatus) as denied:
        connect(
            f"ws://127.0.0.1:{guarded.port}/stream/fan", additional_headers=AUTH, origin=FOREIGN
        )
    assert denied.value.response.status_code == 403
    with connect(
        f"ws://127.0.0.1:{guarded.port}/stream/fan?window=1&hop=1",
        additional_headers=AUTH,
        origin=own,
    ) as ws:
        ws.send(fan_clip(2).astype("<f4").tobytes())
        assert json.loads(ws.recv(timeout=30))["machine"] == "fan"


def test_another_host_is_not_answered(guarded: Server) -> None:
    for host in ("evil.example", "127.0.0.1.evil.example", "monitor.plant.local.evil"):
        answer = httpx.get(f"{guarded.url}/events", headers={"Host": host})
        assert answer.status_code == 400 and "Host" in answer.json()["detail"], host
    assert (
        httpx.get(f"{guarded.url}/events", headers={"Host": "monitor.plant.local:8000"}).status_code
        == 200
    )
    assert (
        httpx.get(
            f"{guarded.url}/events", headers={"Host": f"localhost:{guarded.port}"}
        ).status_code
        == 200
    )
    with pytest.raises(InvalidStatus) as denied:
        connect(
            f"ws://127.0.0.1:{guarded.port}/stream/fan",
            additional_headers={**AUTH, "Host": "evil.example"},
        )
    assert denied.value.response.status_code == 400


def test_no_token_still_checks_content_type_and_origin(models_dir: Path, tmp_path: Path) -> None:
    srv = Server(
        models_dir, tmp_path / "events.db", tmp_path / "serve.log", ["--no-token"], token=None
    ).start()
    try:
        clip = wav_bytes(fan_clip(3))
        for headers in (
            {},
            {"Content-Type": "text/plain"},
        ):  # what a cross-site form or fetch sends without preflight
            answer = httpx.post(
                f"{srv.url}/score", params={"machine": "fan"}, content=clip, headers=headers
            )
            assert answer.status_code == 415, headers
        assert (
            httpx.post(
                f"{srv.url}/score",
                params={"machine": "fan"},
                content=clip,
                headers={"Content-Type": "audio/wav", "Origin": FOREIGN},
            ).status_code
            == 403
        )
        assert (
            httpx.post(
                f"{srv.url}/score",
                params={"machine": "fan"},
                content=clip,
                headers={"Content-Type": "audio/wav"},
            ).status_code
            == 200
        )
        with pytest.raises(InvalidStatus) as denied:
            connect(f"ws://127.0.0.1:{srv.port}/stream/fan", origin=FOREIGN)
        assert denied.value.response.status_code == 403
        with connect(
            f"ws://127.0.0.1:{srv.port}/stream/fan?window=1&hop=1"
        ) as ws:  # open, no token needed
            ws.send(fan_clip(4).astype("<f4").tobytes())
            assert "score" in json.loads(ws.recv(timeout=30))
    finally:
        srv.stop()


def test_no_token_reaches_the_access_log(models_dir: Path, tmp_path: Path) -> None:
    """uvicorn logs every request's path with its query string at INFO: a token a client puts
    in a URL must not end up there (the websocket refuses such a URL, and the line is redacted)."""
    log = tmp_path / "serve.log"
    srv = Server(models_dir, tmp_path / "events.db", log, quiet=False).start()
    try:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{srv.port}/stream/fan?token={TOKEN}")
        assert (
            refused.value.response.status_code == 401
            and "URL" in refused.value.response.body.decode()
        )
        assert (
            httpx.get(f"{srv.url}/events", params={"token": TOKEN, "limit": 1}).status_code == 200
        )
        assert httpx.get(f"{srv.url}/events?access_token={TOKEN}").status_code == 200
        with connect(
            f"ws://127.0.0.1:{srv.port}/stream/fan?window=1&hop=1", additional_headers=AUTH
        ) as ws:
            ws.send(fan_clip(5).astype("<f4").tobytes())
            ws.recv(timeout=30)
        assert _score(srv, {}).status_code == 200
        time.sleep(0.5)
    finally:
        srv.stop()
    text = log.read_text()
    assert (
        "GET /events?token=[redacted]&limit=1" in text
        and "WebSocket /stream/fan?token=[redacted]" in text
    )
    assert '"POST /score?machine=fan HTTP/1.1" 200' in text
    assert TOKEN not in text and TOKEN[:12] not in text


def test_the_login_cookie_is_signed_and_expires() -> None:
    guard = Guard(TOKEN)
    fresh = guard.session("admin")
    assert guard.cookie_ok(fresh) and TOKEN not in fresh
    assert guard.cookie_identity(fresh) == Identity("admin", "operate")  # a cookie never writes
    assert not guard.cookie_ok(guard.session("admin", now=time.time() - 13 * 3600))  # expired
    assert not Guard("another-token-0123456789").cookie_ok(
        fresh
    )  # the token changed (or a restart)
    expiry, _, rest = fresh.partition(".")
    assert not guard.cookie_ok(f"{int(expiry) + 3600}.{rest}")
    assert not guard.cookie_ok("") and not guard.cookie_ok(None)
    assert not guard.cookie_ok(fresh.replace(".admin.", ".other."))


def test_trusted_hosts_follow_the_bind_address() -> None:
    assert trusted_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "::1"]
    assert trusted_hosts("192.168.1.20", ["monitor.plant.local"]) == [
        "monitor.plant.local",
        "192.168.1.20",
    ]
    assert "localhost" in trusted_hosts("0.0.0.0") and trusted_hosts("10.0.0.5", ["*"])[0] == "*"
