"""The app's options in-process: --no-token opens writes, --protect-reads closes reads, a small
body limit, and an internal error that answers without a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from stethoscope.engine import RunContext
from stethoscope.monitor.app import create_app
from stethoscope.monitor.service import Monitor

from .conftest import AUTH, TOKEN, fan_clip, wav_bytes


@pytest.fixture
def monitor(models_dir: Path, tmp_path: Path):
    m = Monitor.open(models_dir, str(tmp_path / "events.db"), RunContext(progress=False, threads=1))
    yield m
    m.close()


def test_no_token_opens_writes(monitor: Monitor) -> None:
    with TestClient(create_app(monitor, token=None)) as client:
        answer = client.post("/score", params={"machine": "fan"}, content=wav_bytes(fan_clip(0)))
        assert answer.status_code == 200 and client.get("/events").json()[0]["id"] == answer.json()["id"]


def test_protect_reads_and_body_limit(monitor: Monitor) -> None:
    with TestClient(create_app(monitor, TOKEN, protect_reads=True, max_body=1024 * 1024)) as client:
        for path in ("/events", "/alarms", "/machines", "/metrics"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=AUTH).status_code == 200, path
        assert client.get("/health").status_code == 200
        big = wav_bytes(fan_clip(0, 40.0))  # 1.3 MB
        assert client.post("/score", params={"machine": "fan"}, content=big, headers=AUTH).status_code == 413
        assert "1 MB" in client.post("/score", params={"machine": "fan"}, content=big, headers=AUTH).json()["detail"]


def test_internal_errors_answer_without_traceback(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(monitor, "score_clip", broken)
    with TestClient(create_app(monitor, TOKEN), raise_server_exceptions=False) as client:
        answer = client.post("/score", params={"machine": "fan"}, content=wav_bytes(fan_clip(0)), headers=AUTH)
    assert answer.status_code == 500 and "secret" not in answer.text and "Traceback" not in answer.text
    assert "RuntimeError" in answer.json()["detail"]
