"""The dashboard in a real headless browser (Debian's Chromium driven by Playwright) against a
real ``stethoscope serve`` subprocess: the page loads, clips posted meanwhile appear on the
timelines with the threshold line, an alarm shows as a band and a row of the alarm list, and a
clicked point shows its anomaly map, spectrogram and a playable clip; with no console error and
no request to anywhere but the service. Skipped only when no Chromium is installed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import AUTH, TOKEN, Server, fan_clip, wav_bytes

WAIT_MS = 30_000


def _post(server: Server, machine: str, seed: int) -> dict:
    answer = httpx.post(
        f"{server.url}/score",
        params={"machine": machine, "source": f"mic{seed}"},
        content=wav_bytes(fan_clip(seed)),
        headers={"Content-Type": "audio/wav", **AUTH},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _count(page, selector: str) -> int:
    return page.eval_on_selector_all(selector, "els => els.length")


def test_dashboard_shows_live_scores_alarms_and_a_clicked_event(browser, server: Server) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    log: dict[str, list[str]] = {"errors": [], "requests": []}
    page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    page.on("request", lambda r: log["requests"].append(r.url))
    _post(server, "fan", 1)  # one event before the page loads
    page.goto(f"{server.url}/", wait_until="load")

    page.wait_for_selector("#m-fan svg circle.pt", timeout=WAIT_MS)
    assert page.title() == "Stethoscope monitor"
    assert _count(page, "article.machine") == 3  # alarming, fan, gearbox
    for machine in ("alarming", "fan", "gearbox"):
        assert _count(page, f"#m-{machine} svg line.threshold") == 1, machine
    assert _count(page, "#m-fan svg circle.pt") == 1 and _count(page, ".alarm-band") == 0
    assert page.is_visible("#no-alarms")

    # live: clips posted after the page loaded appear without a reload
    assert (
        httpx.put(
            f"{server.url}/machines/alarming/alarm", json={"k": 2, "n": 3}, headers=AUTH
        ).status_code
        == 200
    )
    _post(server, "fan", 2)
    first, second = _post(server, "alarming", 3), _post(server, "alarming", 4)
    assert second["alarm"]["state"] == "raised"
    page.wait_for_function(
        "() => document.querySelectorAll('#m-fan circle.pt').length === 2", timeout=WAIT_MS
    )
    page.wait_for_selector("#m-alarming svg rect.alarm-band.active", timeout=WAIT_MS)
    assert (
        _count(page, "#m-alarming circle.pt.anomaly") == 2
        and _count(page, "#m-fan circle.pt.normal") >= 1
    )
    rows = page.eval_on_selector_all(
        "#alarms tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert (
        len(rows) == 1
        and rows[0][0] == "alarming"
        and rows[0][2] == "active"
        and rows[0][3] == "2/3"
    )
    assert page.is_hidden("#no-alarms") and "ALARM" in page.inner_text("#m-alarming h2")

    # a clicked point: its map, spectrogram and audio
    page.click(f"#m-alarming circle.pt[data-id='{first['id']}']")
    page.wait_for_function(
        "() => ['map', 'spectrogram'].every(id => { const i = document.getElementById(id);"
        " return !i.hidden && i.complete && i.naturalWidth > 0; })",
        timeout=WAIT_MS,
    )
    page.wait_for_function(
        "() => document.getElementById('player').readyState >= 1", timeout=WAIT_MS
    )
    assert page.eval_on_selector("#player", "a => a.duration") == pytest.approx(1.0, abs=0.01)
    assert f"event {first['id']} · alarming" in page.inner_text("#detail-text")
    assert "ANOMALY" in page.inner_text("#detail-text")
    assert _count(page, f"circle.pt.selected[data-id='{first['id']}']") == 1

    assert log["errors"] == []
    off_origin = [
        u
        for u in log["requests"]
        if not u.startswith((f"{server.url}/", f"blob:{server.url}/", "data:"))
    ]
    assert off_origin == [] and any(u.endswith("/audio") for u in log["requests"])
    page.close()


def test_dashboard_asks_for_the_token_when_reads_are_protected(
    browser, models_dir: Path, tmp_path: Path
) -> None:
    srv = Server(
        models_dir, tmp_path / "events.db", tmp_path / "serve.log", ["--protect-reads"]
    ).start()
    try:
        event = _post(srv, "fan", 5)
        context = browser.new_context()
        page = context.new_page()
        sent: list[tuple[str, str, dict]] = []
        page.on("request", lambda r: sent.append((r.method, r.url, r.headers)))
        page.goto(f"{srv.url}/", wait_until="load")
        page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
        assert _count(page, "circle.pt") == 0 and "missing or wrong token" in page.inner_text(
            "#status"
        )
        page.fill("#token", "wrong-token-0123456789")
        page.click("#login button")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('login refused')",
            timeout=WAIT_MS,
        )
        assert context.cookies() == []
        page.fill("#token", TOKEN)
        page.click("#login button")
        page.wait_for_selector(
            f"#m-fan circle.pt[data-id='{event['id']}']", timeout=WAIT_MS
        ).click()
        page.wait_for_function(
            "() => document.getElementById('spectrogram').naturalWidth > 0"
            " && document.getElementById('player').readyState >= 1",
            timeout=WAIT_MS,
        )
        assert page.is_hidden("#login")
        (cookie,) = (
            context.cookies()
        )  # set by the login form's answer: the page's script cannot read it
        assert (
            cookie["httpOnly"] is True
            and cookie["sameSite"] == "Strict"
            and TOKEN not in cookie["value"]
        )
        assert (
            page.evaluate("() => document.cookie") == ""
            and page.evaluate("() => sessionStorage.length") == 0
        )
        assert all(TOKEN not in url and "authorization" not in headers for _, url, headers in sent)
        assert [url for method, url, _ in sent if method == "POST"] == [f"{srv.url}/login"] * 2
        # the cookie opens reads, never writes; and a plain client without it still gets 401
        jar = {cookie["name"]: cookie["value"]}
        assert httpx.get(f"{srv.url}/events", cookies=jar).status_code == 200
        assert httpx.get(f"{srv.url}/events").status_code == 401
        assert (
            httpx.post(
                f"{srv.url}/score",
                params={"machine": "fan"},
                content=wav_bytes(fan_clip(6)),
                cookies=jar,
                headers={"Content-Type": "audio/wav"},
            ).status_code
            == 401
        )
        assert (
            httpx.get(
                f"{srv.url}/events", cookies={cookie["name"]: "9999999999.forged"}
            ).status_code
            == 401
        )
        context.close()
    finally:
        srv.stop()
