"""The HTTP service, for real: ``stethoscope serve`` on a loopback port with an SQLite file."""

from __future__ import annotations

import io
import json
import re
import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from stethoscope.cli import main
from stethoscope.engine import RunContext
from stethoscope.monitor.migrations import LATEST
from stethoscope.monitor.service import model_version
from stethoscope.systems import load_system

from .conftest import AUTH, TOKEN, Server, fan_clip, wav_bytes


def post(
    server: Server, machine: str, body: bytes, headers: dict | None = None, **params
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/score",
        params={"machine": machine, **params},
        content=body,
        headers={"Content-Type": "audio/wav", **AUTH, **(headers or {})},
        timeout=30,
    )


def test_posted_clips_are_scored_recorded_and_readable(server: Server, models_dir: Path) -> None:
    system = load_system(models_dir / "fan")
    clips = [wav_bytes(fan_clip(seed)) for seed in (10, 11, 12)]  # 16-bit WAV
    answers = [post(server, "fan", clip, source=f"mic{i}") for i, clip in enumerate(clips)]
    assert [a.status_code for a in answers] == [200] * 3
    waves = [sf.read(io.BytesIO(clip), dtype="float32")[0] for clip in clips]
    expected = system.score_waveforms(waves, 16_000, RunContext(progress=False, threads=1))
    for answer, score in zip(answers, expected, strict=True):
        body = answer.json()
        assert body["score"] == pytest.approx(score, rel=1e-5, abs=1e-9)
        assert body["threshold"] == system.threshold_ and body["decision"] == int(
            body["score"] > system.threshold_
        )
        assert body["model_version"] == model_version(models_dir / "fan") and body[
            "anomaly"
        ] is bool(body["decision"])
    ids = [a.json()["id"] for a in answers]
    events = httpx.get(
        f"{server.url}/events", params={"machine": "fan", "order": "asc"}
    ).json()  # reads: no token
    assert [e["id"] for e in events][-3:] == ids
    assert [e["source"] for e in events][-3:] == ["mic0", "mic1", "mic2"]
    assert [e["score"] for e in events][-3:] == [a.json()["score"] for a in answers]
    after = httpx.get(
        f"{server.url}/events", params={"after_id": ids[0], "order": "asc", "limit": 1}
    ).json()
    assert [e["id"] for e in after] == [ids[1]]
    since = answers[2].json()["time"]
    assert ids[2] in [
        e["id"] for e in httpx.get(f"{server.url}/events", params={"since": since}).json()
    ]
    assert httpx.get(f"{server.url}/events", params={"since": "2100-01-01T00:00:00"}).json() == []
    assert httpx.get(f"{server.url}/events", params={"since": "yesterday"}).status_code == 422


def test_alarm_after_k_of_n_anomalous(server: Server) -> None:
    rule = httpx.put(f"{server.url}/machines/alarming/alarm", json={"k": 2, "n": 3}, headers=AUTH)
    assert rule.status_code == 200
    first, second = (post(server, "alarming", wav_bytes(fan_clip(s))).json() for s in (20, 21))
    assert first["decision"] == second["decision"] == 1 and first["threshold"] == 0.0
    assert first["alarm"] is None and second["alarm"]["state"] == "raised"
    (alarm,) = httpx.get(
        f"{server.url}/alarms", params={"machine": "alarming", "active": True}
    ).json()
    assert alarm["raised_score_id"] == second["id"] and (alarm["k"], alarm["n"]) == (2, 3)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'stethoscope_alarms_active{machine="alarming"} 1.0' in metrics
    assert 'stethoscope_alarms_active{machine="fan"} 0.0' in metrics
    machines = {m["machine"]: m for m in httpx.get(f"{server.url}/machines").json()}
    assert (
        machines["alarming"]["active_alarm"] == alarm["id"] and machines["alarming"]["alarm_k"] == 2
    )


def test_writes_need_the_token(server: Server) -> None:
    clip = wav_bytes(fan_clip(1))
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        answer = post(server, "fan", clip, headers)
        assert answer.status_code == 401 and "token" in answer.json()["detail"]
    assert httpx.put(f"{server.url}/machines/fan/alarm", json={"k": 1, "n": 1}).status_code == 401
    with connect(
        f"ws://127.0.0.1:{server.port}/stream/fan"
    ) as ws:  # no header: the first message must be the token
        ws.send(json.dumps({"token": "wrong-token-0123456789"}))
        assert "missing or wrong token" in json.loads(ws.recv(timeout=10))["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1008
    with connect(f"ws://127.0.0.1:{server.port}/stream/fan") as ws:
        ws.send(
            wave_frame := np.zeros(16_000, "<f4").tobytes()
        )  # audio before the token is refused too
        assert "missing or wrong token" in json.loads(ws.recv(timeout=10))["error"] and wave_frame
    for headers, query in (
        ({"Authorization": "Bearer wrong-token-0123456789"}, ""),
        ({}, f"?token={TOKEN}"),
        (AUTH, f"?token={TOKEN}"),
    ):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{server.port}/stream/fan{query}", additional_headers=headers)
        assert refused.value.response.status_code == 401, (headers, query)


def test_bad_requests_get_clear_4xx(server: Server) -> None:
    clip = wav_bytes(fan_clip(1))
    for machine, status in (
        ("pump", 404),
        ("../fan", 422),
        ("fan/../gearbox", 422),
        ("..", 422),
        ("", 422),
    ):
        answer = post(server, machine, clip)
        assert answer.status_code == status, machine
        assert "Traceback" not in answer.text
    assert "served: alarming, fan, gearbox" in post(server, "pump", clip).json()["detail"]
    assert post(server, "fan", b"{}", {"Content-Type": "application/json"}).status_code == 415
    garbage = post(
        server, "fan", b"\x00not audio" * 100, {"Content-Type": "application/octet-stream"}
    )
    assert garbage.status_code == 422 and "not a readable audio file" in garbage.json()["detail"]
    assert post(server, "fan", b"").status_code == 422
    assert httpx.get(f"{server.url}/events", params={"limit": 0}).status_code == 422
    assert httpx.get(f"{server.url}/events", params={"machine": "../x"}).status_code == 422
    assert (
        httpx.put(
            f"{server.url}/machines/fan/alarm", json={"k": 6, "n": 5}, headers=AUTH
        ).status_code
        == 422
    )


def test_bodies_over_50_mb_get_413(server: Server) -> None:
    with socket.create_connection(
        ("127.0.0.1", server.port), timeout=30
    ) as sock:  # declared: refused unread
        sock.sendall(
            "POST /score?machine=fan HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
            f"Content-Type: audio/wav\r\nContent-Length: {60 * 2**20}\r\n\r\n".encode()
        )
        assert sock.recv(200).startswith(b"HTTP/1.1 413")

    def chunks():  # undeclared (chunked): counted as it arrives
        for _ in range(51):
            yield b"\0" * 2**20

    answer = httpx.post(
        f"{server.url}/score",
        params={"machine": "fan"},
        content=chunks(),
        headers={"Content-Type": "audio/wav", **AUTH},
        timeout=60,
    )
    assert answer.status_code == 413 and "50 MB" in answer.json()["detail"]


def test_websocket_scores_equal_the_stream_verb(
    server: Server, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    wave = fan_clip(30, 3.0)
    path = tmp_path / "rec.wav"
    sf.write(path, wave, 16_000)
    assert (
        main(
            [
                "stream",
                "--model",
                str(models_dir / "fan"),
                str(path),
                "--window",
                "1",
                "--hop",
                "0.5",
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    verb = np.array([[float(r[0]), float(r[1])] for r in rows])
    assert len(verb) == 5  # windows end at 1.0, 1.5, ..., 3.0 s

    url = f"ws://127.0.0.1:{server.port}/stream/fan?rate=16000&window=1&hop=0.5&source=line"
    with connect(url, additional_headers=AUTH) as ws:
        for start in range(0, len(wave), 1024):
            ws.send(wave[start : start + 1024].astype("<f4").tobytes())
        got = [json.loads(ws.recv(timeout=30)) for _ in range(len(verb))]
    np.testing.assert_allclose([g["end_seconds"] for g in got], verb[:, 0])
    np.testing.assert_allclose(
        [g["score"] for g in got], verb[:, 1], rtol=1e-5, atol=1e-9
    )  # the verb prints 6 digits
    stored = {
        e["id"]: e for e in httpx.get(f"{server.url}/events", params={"machine": "fan"}).json()
    }
    assert all(
        stored[g["id"]]["score"] == g["score"] and stored[g["id"]]["source"] == "line" for g in got
    )
    kept = [
        sf.read(
            io.BytesIO(httpx.get(f"{server.url}/events/{g['id']}/audio").content), dtype="float32"
        )[0]
        for g in got
    ]  # the first event keeps its whole window, every later one only its new hop
    assert [len(k) for k in kept] == [16_000] + [8_000] * (len(got) - 1)
    np.testing.assert_allclose(np.concatenate(kept), wave, atol=1.5 / 32768)

    pcm16 = np.round(wave * 32767).astype(
        "<i2"
    )  # int16 frames, the token as the first message (as a browser must)
    with connect(f"ws://127.0.0.1:{server.port}/stream/fan?format=s16&window=1&hop=0.5") as ws:
        ws.send(json.dumps({"token": TOKEN}))
        ws.send(pcm16.tobytes())
        got16 = [json.loads(ws.recv(timeout=30))["score"] for _ in range(len(verb))]
    np.testing.assert_allclose(got16, verb[:, 1], rtol=1e-2, atol=1e-9)


def test_websocket_refuses_bad_streams(server: Server) -> None:
    base = f"ws://127.0.0.1:{server.port}/stream"
    for path, status in (
        ("pump", 404),
        ("fan?rate=abc", 422),
        ("fan?format=mp3", 422),
        ("fan?window=0", 422),
        ("fan?window=2&hop=3", 422),
        ("fan?hop=0.01", 422),
    ):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{base}/{path}", additional_headers=AUTH)
        assert refused.value.response.status_code == status, path
    with connect(f"{base}/fan", additional_headers=AUTH) as ws:
        ws.send(b"abc")
        assert "whole 4-byte samples" in json.loads(ws.recv(timeout=10))["error"]
    with connect(f"{base}/fan", additional_headers=AUTH) as ws:
        ws.send(np.full(100, np.nan, dtype="<f4").tobytes())
        assert "NaN" in json.loads(ws.recv(timeout=10))["error"]


def test_health_and_metrics(server: Server) -> None:
    health = httpx.get(f"{server.url}/health").json()
    assert health == {
        "status": "ok",
        "machines": ["alarming", "fan", "gearbox"],
        "schema_version": LATEST,
    }
    post(server, "gearbox", wav_bytes(fan_clip(40)))
    text = httpx.get(f"{server.url}/metrics").text
    assert re.search(
        r'stethoscope_scores_total\{decision="(normal|anomaly)",machine="gearbox"\} 1\.0', text
    )
    assert re.search(
        r'stethoscope_http_requests_total\{method="POST",route="/score",status="200"\} \d', text
    )
    assert 'stethoscope_http_request_duration_seconds_bucket{le="+Inf",route="/score"}' in text
    assert "stethoscope_streams_open 0.0" in text
    assert re.search(r'stethoscope_scoring_duration_seconds_count\{machine="gearbox"\} 1\.0', text)
