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

AUDIO = {**AUTH, "Content-Type": "audio/wav"}


@pytest.fixture
def monitor(models_dir: Path, tmp_path: Path):
    m = Monitor.open(models_dir, str(tmp_path / "events.db"), RunContext(progress=False, threads=1))
    yield m
    m.close()


def test_no_token_opens_writes_but_still_wants_an_audio_content_type(monitor: Monitor) -> None:
    with TestClient(create_app(monitor, token=None)) as client:
        clip = wav_bytes(fan_clip(0))
        answer = client.post(
            "/score", params={"machine": "fan"}, content=clip, headers={"Content-Type": "audio/wav"}
        )
        assert (
            answer.status_code == 200
            and client.get("/events").json()[0]["id"] == answer.json()["id"]
        )
        for headers in (
            {},
            {"Content-Type": "text/plain"},
            {"Content-Type": "application/x-www-form-urlencoded"},
        ):
            refused = client.post(
                "/score", params={"machine": "fan"}, content=clip, headers=headers
            )
            assert (
                refused.status_code == 415 and "Content-Type audio/*" in refused.json()["detail"]
            ), headers


def test_protect_reads_and_body_limit(monitor: Monitor) -> None:
    with TestClient(create_app(monitor, TOKEN, protect_reads=True, max_body=1024 * 1024)) as client:
        for path in ("/events", "/alarms", "/machines", "/metrics"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=AUTH).status_code == 200, path
        assert client.get("/health").status_code == 200
        big = wav_bytes(fan_clip(0, 40.0))  # 1.3 MB
        assert (
            client.post("/score", params={"machine": "fan"}, content=big, headers=AUDIO).status_code
            == 413
        )
        assert (
            "1 MB"
            in client.post("/score", params={"machine": "fan"}, content=big, headers=AUDIO).json()[
                "detail"
            ]
        )


def test_internal_errors_answer_without_traceback(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(monitor, "score_clip", broken)
    with TestClient(create_app(monitor, TOKEN), raise_server_exceptions=False) as client:
        answer = client.post(
            "/score", params={"machine": "fan"}, content=wav_bytes(fan_clip(0)), headers=AUDIO
        )
    assert (
        answer.status_code == 500 and "secret" not in answer.text and "Traceback" not in answer.text
    )
    assert "RuntimeError" in answer.json()["detail"]


def test_on_a_network_address_every_read_needs_the_token(monitor: Monitor) -> None:
    from stethoscope.cli.parser import build_parser
    from stethoscope.cli.serve import reads_protected

    args = build_parser().parse_args(["serve", "--models", "m", "--host", "192.168.1.20"])
    with TestClient(create_app(monitor, TOKEN, protect_reads=reads_protected(args))) as client:
        event = client.post(
            "/score", params={"machine": "fan"}, content=wav_bytes(fan_clip(0)), headers=AUDIO
        ).json()
        reads = [
            "/events",
            "/alarms",
            "/machines",
            "/metrics",
            f"/events/{event['id']}/audio",
            f"/events/{event['id']}/spectrogram.png",
            f"/events/{event['id']}/map.png",
        ]
        for path in reads:
            refused = client.get(path)
            assert refused.status_code == 401 and TOKEN not in refused.text, path
            assert client.get(path, headers=AUTH).status_code == 200, path
        assert client.get("/health").status_code == 200  # and the page shell, which holds no data
        assert client.get("/").status_code == 200 and "fan" not in client.get("/").text


def test_ids_beyond_sqlite_integers_are_422_and_errors_never_name_the_database(
    monitor: Monitor, tmp_path: Path
) -> None:
    with TestClient(create_app(monitor, TOKEN), raise_server_exceptions=False) as client:
        for path, params in [
            ("/events", {"after_id": 10**26}),
            ("/events", {"after_id": 2**63}),
            (f"/events/{10**26}/audio", {}),
            (f"/events/{2**63}/map.png", {}),
            (f"/events/{10**26}/spectrogram.png", {}),
        ]:
            answer = client.get(path, params=params)
            assert answer.status_code == 422, (path, params, answer.text)
        assert client.get("/events", params={"after_id": 2**63 - 1}).json() == []
        assert client.get(f"/events/{2**63 - 1}/audio").status_code == 404
        monitor.store.engine.dispose()
        for name in ("events.db", "events.db-wal", "events.db-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        (tmp_path / "events.db").write_bytes(
            b"not a database at all" * 64
        )  # the store is broken underneath
        for answer in (
            client.get("/health"),
            client.get("/events"),
            client.post(
                "/score", params={"machine": "fan"}, content=wav_bytes(fan_clip(1)), headers=AUDIO
            ),
        ):
            assert answer.status_code == 503, answer.text
            assert (
                str(tmp_path) not in answer.text
                and "events.db" not in answer.text
                and TOKEN not in answer.text
            )
