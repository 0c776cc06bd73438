"""The operator's workflow over HTTP, against a real ``stethoscope serve --tokens FILE`` on
loopback: each scope may do what it should and no more (401 without a token, 403 with too small
a scope), every action is stored with its author and time (answers, audit log and the SQLite
file itself), and a muted machine's clips are scored and stored but raise no alarm."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from .conftest import Server, fan_clip, wav_bytes

VIEW, ALICE, REC = (
    "viewer-token-0123456789abcdef",
    "alice-token-0123456789abcdef",
    "recorder-token-0123456789abc",
)


def tokens_file(folder: Path) -> Path:
    """viewer (read, its SHA-256), alice (operate) and recorder (write), the last two from env."""
    path = folder / "tokens.yaml"
    path.write_text(f"""tokens:
  - name: viewer
    scope: read
    sha256: {hashlib.sha256(VIEW.encode()).hexdigest()}
  - {{name: alice, scope: operate, token_env: ALICE_TOKEN}}
  - {{name: recorder, scope: write, token_env: RECORDER_TOKEN}}
""")
    return path


@pytest.fixture
def start(models_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start ``serve --tokens`` (protected reads) on its own store; stopped after the test."""
    started: list[Server] = []

    def run(quiet: bool = True) -> Server:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ALICE_TOKEN", ALICE)
            env.setenv("RECORDER_TOKEN", REC)
            srv = Server(
                models_dir,
                tmp_path / "events.db",
                tmp_path / "serve.log",
                ["--tokens", str(tokens_file(tmp_path)), "--protect-reads"],
                quiet=quiet,
                token=None,
            )
            started.append(srv.start())
        return srv

    yield run
    for srv in started:
        srv.stop()


def call(
    srv: Server, method: str, path: str, token: str | None = None, **kw: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        method, f"{srv.url}{path}", headers={**headers, **kw.pop("headers", {})}, timeout=30, **kw
    )


def score(srv: Server, machine: str, seed: int, token: str = REC) -> httpx.Response:
    return call(
        srv,
        "POST",
        "/score",
        token,
        params={"machine": machine},
        content=wav_bytes(fan_clip(seed)),
        headers={"Content-Type": "audio/wav"},
    )


def test_each_scope_does_what_it_may_and_no_more(start: Callable[..., Server]) -> None:
    srv = start(quiet=False)
    assert call(srv, "GET", "/events").status_code == 401
    assert call(srv, "GET", "/events", VIEW).status_code == 200
    assert (
        score(srv, "fan", 1, VIEW).status_code == 403
        and score(srv, "fan", 1, ALICE).status_code == 403
    )
    scored = score(srv, "fan", 1, REC)
    assert scored.status_code == 200 and scored.json()["muted"] is False
    event = scored.json()["id"]
    body = {"label": "normal", "note": "new belt"}
    assert call(srv, "POST", f"/events/{event}/label", json=body).status_code == 401
    assert (
        call(srv, "POST", f"/events/{event}/label", "not-a-token-0123456789", json=body).status_code
        == 401
    )
    refused = call(srv, "POST", f"/events/{event}/label", VIEW, json=body)
    assert (
        refused.status_code == 403 and "'viewer' has the scope 'read'" in refused.json()["detail"]
    )
    assert call(srv, "POST", f"/events/{event}/label", ALICE, json=body).json()["author"] == "alice"
    assert (
        call(srv, "POST", f"/events/{event}/label", REC, json=body).json()["author"] == "recorder"
    )
    # the login cookie acts as its token's name, up to operate, only from this service's own origin
    login = httpx.post(f"{srv.url}/login", data={"token": ALICE})
    jar = dict(login.cookies)
    assert login.status_code == 204 and ALICE not in str(jar)
    by_cookie = call(srv, "POST", f"/events/{event}/label", cookies=jar, json={"label": "fault"})
    assert by_cookie.status_code == 200 and by_cookie.json()["author"] == "alice"
    assert (
        call(
            srv,
            "POST",
            f"/events/{event}/label",
            cookies=jar,
            json={"label": "fault"},
            headers={"Origin": "http://evil.example"},
        ).status_code
        == 403
    )
    assert (
        call(
            srv,
            "POST",
            f"/events/{event}/label",
            cookies=jar,
            content=b'{"label": "fault"}',
            headers={"Content-Type": "text/plain"},
        ).status_code
        == 422
    )  # a cross-site form cannot send JSON
    assert score(srv, "fan", 3, token="").status_code == 401
    assert (
        httpx.post(
            f"{srv.url}/score",
            params={"machine": "fan"},
            content=wav_bytes(fan_clip(3)),
            cookies=jar,
            headers={"Content-Type": "audio/wav"},
        ).status_code
        == 401
    )  # a cookie never posts clips
    assert call(srv, "PUT", "/machines/fan/alarm", ALICE, json={"k": 1, "n": 1}).status_code == 403
    assert call(srv, "PUT", "/machines/fan/alarm", REC, json={"k": 1, "n": 1}).status_code == 200
    with pytest.raises(InvalidStatus) as denied:
        connect(
            f"ws://127.0.0.1:{srv.port}/stream/fan",
            additional_headers={"Authorization": f"Bearer {ALICE}"},
        )
    assert denied.value.response.status_code == 403
    with connect(
        f"ws://127.0.0.1:{srv.port}/stream/fan?window=1&hop=1",
        additional_headers={"Authorization": f"Bearer {REC}"},
    ) as ws:
        ws.send(fan_clip(2).astype("<f4").tobytes())
        assert '"score"' in ws.recv(timeout=30)
    srv.stop()
    log = srv.log.read_text()
    assert "tokens viewer (read), alice (operate), recorder (write)" in log
    assert all(token not in log for token in (VIEW, ALICE, REC)) and "Traceback" not in log


def test_every_action_is_stored_with_its_author(start: Callable[..., Server]) -> None:
    srv = start()
    assert (
        call(srv, "PUT", "/machines/alarming/alarm", REC, json={"k": 2, "n": 2}).status_code == 200
    )
    first, second = score(srv, "alarming", 1).json(), score(srv, "alarming", 2).json()
    alarm = second["alarm"]["id"]
    assert second["alarm"]["state"] == "raised"

    acked = call(srv, "POST", f"/alarms/{alarm}/ack", ALICE, json={"note": "bearing checked"})
    assert (
        acked.status_code == 200
        and acked.json()["author"] == "alice"
        and acked.json()["note"] == "bearing checked"
    )
    assert abs(acked.json()["time"] - time.time()) < 600
    again = call(srv, "POST", f"/alarms/{alarm}/ack", REC, json={"note": "me too"})
    assert again.status_code == 409 and "acknowledged by alice" in again.json()["detail"]
    assert call(srv, "POST", "/alarms/999999/ack", ALICE, json={}).status_code == 404
    (listed,) = call(srv, "GET", "/alarms?machine=alarming", VIEW).json()
    assert listed["ack"]["author"] == "alice" and listed["ack"]["note"] == "bearing checked"

    assert (
        call(
            srv, "POST", f"/events/{first['id']}/label", ALICE, json={"label": "fault"}
        ).status_code
        == 200
    )
    assert (
        call(srv, "POST", "/events/999999/label", ALICE, json={"label": "fault"}).status_code == 404
    )
    assert (
        call(
            srv, "POST", f"/events/{first['id']}/label", ALICE, json={"label": "maybe"}
        ).status_code
        == 422
    )
    (label,) = call(srv, "GET", "/labels?machine=alarming", VIEW).json()
    assert (
        label["event_id"] == first["id"]
        and label["label"] == "fault"
        and label["author"] == "alice"
    )

    end = time.time() + 3600
    muted = call(
        srv, "POST", "/machines/fan/mutes", ALICE, json={"end": end, "reason": "cleaning shift"}
    )
    assert muted.status_code == 201 and muted.json()["author"] == "alice"
    mute = muted.json()["id"]
    assert abs(muted.json()["ends_at"] - end) < 1e-3
    assert [m["id"] for m in call(srv, "GET", "/mutes?current=true", VIEW).json()] == [mute]
    assert (
        call(
            srv, "POST", "/machines/fan/mutes", ALICE, json={"end": time.time() - 5, "reason": "x"}
        ).status_code
        == 422
    )
    assert (
        call(
            srv, "POST", "/machines/nosuch/mutes", ALICE, json={"end": end, "reason": "x"}
        ).status_code
        == 404
    )
    assert (
        call(srv, "POST", "/machines/fan/mutes", ALICE, json={"end": end, "reason": ""}).status_code
        == 422
    )
    cancelled = call(srv, "POST", f"/mutes/{mute}/cancel", REC)
    assert cancelled.status_code == 200 and cancelled.json()["cancelled_by"] == "recorder"
    assert call(srv, "POST", f"/mutes/{mute}/cancel", REC).status_code == 409
    assert call(srv, "GET", "/mutes?current=true", VIEW).json() == []

    log = call(srv, "GET", "/actions", VIEW).json()
    assert [(a["action"], a["author"], a["target_id"]) for a in log] == [
        ("unmute", "recorder", mute),
        ("mute", "alice", mute),
        ("label", "alice", first["id"]),
        ("ack", "alice", alarm),
    ]
    assert (
        log[1]["detail"]["reason"] == "cleaning shift"
        and log[3]["detail"]["note"] == "bearing checked"
    )
    assert [a["action"] for a in call(srv, "GET", "/actions?author=recorder", VIEW).json()] == [
        "unmute"
    ]
    srv.stop()
    with sqlite3.connect(srv.db) as db:
        assert db.execute("SELECT author, note FROM alarm_acks").fetchall() == [
            ("alice", "bearing checked")
        ]
        assert db.execute("SELECT author, label FROM event_labels").fetchall() == [
            ("alice", "fault")
        ]
        assert db.execute("SELECT author, reason, cancelled_by FROM mutes").fetchall() == [
            ("alice", "cleaning shift", "recorder")
        ]
        assert db.execute("SELECT count(*) FROM operator_actions").fetchone() == (4,)


def test_a_muted_machine_is_scored_and_stored_but_raises_no_alarm(
    start: Callable[..., Server],
) -> None:
    srv = start()
    assert (
        call(srv, "PUT", "/machines/alarming/alarm", REC, json={"k": 1, "n": 2}).status_code == 200
    )
    mute = call(
        srv,
        "POST",
        "/machines/alarming/mutes",
        ALICE,
        json={"end": time.time() + 3600, "reason": "bearing replacement"},
    ).json()
    during = [score(srv, "alarming", seed).json() for seed in (1, 2, 3)]
    assert all(e["muted"] and e["anomaly"] and e["alarm"] is None for e in during)
    stored = call(srv, "GET", "/events?machine=alarming", VIEW).json()
    assert sorted(e["id"] for e in stored) == [e["id"] for e in during] and all(
        e["decision"] == 1 for e in stored
    )
    assert call(srv, "GET", "/alarms?machine=alarming", VIEW).json() == []
    assert score(srv, "fan", 4).json()["muted"] is False  # another machine is not muted
    call(srv, "POST", f"/mutes/{mute['id']}/cancel", ALICE)
    after = score(srv, "alarming", 5).json()
    assert (
        after["muted"] is False and after["alarm"]["state"] == "raised"
    )  # the rule applies again at once
