"""The operator's workflow in a real headless Chromium (Debian's, driven by Playwright) against a
real ``stethoscope serve --tokens FILE --protect-reads``: an operator logs in, acknowledges an
alarm with a note, marks an event normal and mutes a machine from the dashboard's forms; the
store then holds each action with the operator's name. A token of the read scope is refused.
No console error but the refused requests' own (a CSP violation would be one), and no request
leaves the service."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from .conftest import Server, fan_clip, wav_bytes
from .test_routes_operator import ALICE, REC, VIEW, tokens_file

WAIT_MS = 30_000


def _post(srv: Server, machine: str, seed: int) -> dict:
    answer = httpx.post(
        f"{srv.url}/score",
        params={"machine": machine},
        content=wav_bytes(fan_clip(seed)),
        headers={"Authorization": f"Bearer {REC}", "Content-Type": "audio/wav"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _login(browser, srv: Server, token: str, log: dict[str, list[str]]):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    page.on("request", lambda r: log["requests"].append(r.url))
    page.goto(f"{srv.url}/", wait_until="load")
    page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
    page.fill("#token", token)
    page.click("#login button")
    page.wait_for_selector("#m-fan circle.pt", timeout=WAIT_MS)
    return context, page


def test_an_operator_acknowledges_labels_and_mutes_from_the_dashboard(
    browser, models_dir: Path, tmp_path: Path
) -> None:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ALICE_TOKEN", ALICE)
        env.setenv("RECORDER_TOKEN", REC)
        srv = Server(
            models_dir,
            tmp_path / "events.db",
            tmp_path / "serve.log",
            ["--tokens", str(tokens_file(tmp_path)), "--protect-reads"],
            token=None,
        ).start()
    log: dict[str, list[str]] = {"errors": [], "requests": []}
    try:
        httpx.put(
            f"{srv.url}/machines/alarming/alarm",
            json={"k": 2, "n": 2},
            headers={"Authorization": f"Bearer {REC}"},
        ).raise_for_status()
        _post(srv, "alarming", 1)
        alarm = _post(srv, "alarming", 2)["alarm"]["id"]
        event = _post(srv, "fan", 3)["id"]

        # a viewer sees everything but may not act
        viewer, page = _login(browser, srv, VIEW, log)
        page.click(f"#m-fan circle.pt[data-id='{event}']")
        page.click("#label-form button[type=submit]")
        page.wait_for_function(
            "() => document.getElementById('op-said').textContent.includes('refused')",
            timeout=WAIT_MS,
        )
        assert "'viewer' has the scope 'read'" in page.inner_text("#op-said")
        viewer.close()

        context, page = _login(browser, srv, ALICE, log)
        page.click(f"#alarms tr[data-alarm='{alarm}'] button.ack", timeout=WAIT_MS)
        page.fill("#ack-note", "bearing checked")
        page.click("#ack-form button[type=submit]")
        page.wait_for_function(
            f"() => (document.querySelector(\"#alarms tr[data-alarm='{alarm}'] td.ack\") || {{}})"
            f".textContent === 'alice: bearing checked'",
            timeout=WAIT_MS,
        )
        assert page.is_hidden("#ack-form")

        page.click(f"#m-fan circle.pt[data-id='{event}']")
        page.check("#label-form input[value=normal]")
        page.fill("#label-note", "belt replaced")
        page.click("#label-form button[type=submit]")
        page.wait_for_function(
            "() => document.getElementById('label-said').textContent"
            ".startsWith('marked normal by alice')",
            timeout=WAIT_MS,
        )

        page.select_option("#mute-machine", "gearbox")
        page.fill("#mute-reason", "cleaning shift")
        page.click("#mute-form button[type=submit]")  # until: the form's default, an hour from now
        page.wait_for_selector("#m-gearbox h2 .muted", timeout=WAIT_MS)
        assert "gearbox" in page.inner_text("#mutes li") and "by alice" in page.inner_text(
            "#mutes li"
        )
        context.close()
    finally:
        srv.stop()
    expected = (
        "status of 401 (Unauthorized)",
        "status of 403 (Forbidden)",
    )  # before the login; the viewer's try
    assert [e for e in log["errors"] if not e.endswith(expected)] == [] and len(log["errors"]) >= 2
    assert [
        u for u in log["requests"] if not u.startswith((f"{srv.url}/", f"blob:{srv.url}/", "data:"))
    ] == []
    with sqlite3.connect(srv.db) as db:
        assert db.execute("SELECT alarm_id, author, note FROM alarm_acks").fetchall() == [
            (alarm, "alice", "bearing checked")
        ]
        assert db.execute("SELECT score_id, label, author, note FROM event_labels").fetchall() == [
            (event, "normal", "alice", "belt replaced")
        ]
        ((machine, author, reason, starts, ends),) = db.execute(
            "SELECT machines.name, author, reason, starts_at, ends_at FROM mutes JOIN machines "
            "ON machines.id = mutes.machine_id"
        ).fetchall()
        assert (machine, author, reason) == ("gearbox", "alice", "cleaning shift")
        assert (
            abs(ends - (starts + 3600)) <= 180
        )  # the form's end has minutes, set when the page loaded
        assert [
            row[0] for row in db.execute("SELECT author FROM operator_actions ORDER BY id")
        ] == ["alice"] * 3
    assert time.time() < ends
