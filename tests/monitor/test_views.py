"""The dashboard's routes in-process (a real Monitor on an SQLite file): the page and its assets,
an event's kept audio, anomaly map and spectrogram, the 404s when there is nothing to show,
and reads behind ``--protect-reads``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from stethoscope.engine import RunContext
from stethoscope.monitor.app import create_app
from stethoscope.monitor.service import Monitor

from .conftest import AUDIO, AUTH, TOKEN, fan_clip, wav_bytes


def _monitor(models_dir: Path, db: Path, keep_audio: int = 1000) -> Monitor:
    return Monitor.open(
        models_dir, str(db), RunContext(progress=False, threads=1), keep_audio=keep_audio
    )


@pytest.fixture
def monitor(models_dir: Path, tmp_path: Path):
    m = _monitor(models_dir, tmp_path / "events.db")
    yield m
    m.close()


def _post(client: TestClient, machine: str, wave: np.ndarray) -> int:
    answer = client.post(
        "/score", params={"machine": machine}, content=wav_bytes(wave), headers=AUDIO
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def test_the_page_and_its_assets_come_from_the_package(monitor: Monitor) -> None:
    with TestClient(create_app(monitor, TOKEN)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert (
            '<script src="/dashboard/dashboard.js"' in page.text
            and "http" not in page.text.replace('lang="en"', "")
        )  # no absolute URL: nothing from another origin
        script = client.get("/dashboard/dashboard.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "function drawMachine" in script.text
        assert client.get("/dashboard/dashboard.css").headers["content-type"].startswith("text/css")
        for path in (
            "/dashboard/../app.py",
            "/dashboard/index.html",
            "/dashboard/%2e%2e/service.py",
        ):
            assert client.get(path).status_code == 404, path


def test_an_event_gives_its_audio_map_and_spectrogram(monitor: Monitor) -> None:
    wave = fan_clip(5, 2.0)
    with TestClient(create_app(monitor, TOKEN)) as client:
        event = _post(client, "fan", wave)
        audio = client.get(f"/events/{event}/audio")
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/flac"
        kept, rate = sf.read(io.BytesIO(audio.content), dtype="float32")
        assert rate == 16_000 and kept.shape == wave.shape
        np.testing.assert_allclose(
            kept, wave, atol=1.5 / 32768
        )  # 16-bit FLAC: lossless to the last bit
        assert len(audio.content) < wave.size * 2  # smaller than 16-bit PCM
        for kind in ("map", "spectrogram"):
            png = client.get(f"/events/{event}/{kind}.png")
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert png.content.startswith(b"\x89PNG") and len(png.content) > 5_000
        assert (
            client.get(f"/events/{event}/map.png").content
            != client.get(f"/events/{event}/spectrogram.png").content
        )


def test_the_pictures_are_drawn_by_the_served_model(monitor: Monitor) -> None:
    """The map drawn from the kept audio is the served system's `explain` of that audio."""
    wave = fan_clip(6, 2.0)
    with TestClient(create_app(monitor, TOKEN)) as client:
        event = _post(client, "fan", wave)
        flac = client.get(f"/events/{event}/audio").content
    system = monitor.model("fan").system
    kept = sf.read(io.BytesIO(flac), dtype="float32")[0]
    explained = system.explain_waveform(kept, 16_000, monitor.ctx)
    stored = monitor.store.event(event)["score"]
    assert explained.score == pytest.approx(
        stored, rel=1e-3, abs=1e-9
    )  # the 16-bit copy scores as the posted clip
    assert explained.anomaly_map.shape == explained.logmel.shape == (128, 63)  # 2 s at hop 512


def test_nothing_to_show_answers_404_with_a_reason(models_dir: Path, tmp_path: Path) -> None:
    quiet = _monitor(models_dir, tmp_path / "quiet.db", keep_audio=0)
    with TestClient(create_app(quiet, TOKEN)) as client:
        event = _post(client, "fan", fan_clip(7))
        for path in (
            f"/events/{event}/audio",
            f"/events/{event}/map.png",
            f"/events/{event}/spectrogram.png",
        ):
            answer = client.get(path)
            assert answer.status_code == 404 and "--keep-audio 0" in answer.json()["detail"], path
        assert "no event 999" in client.get("/events/999/audio").json()["detail"]
        assert client.get("/events/-1/audio").status_code == 422
        assert client.get("/events/abc/map.png").status_code == 422
    quiet.close()
    pruning = _monitor(models_dir, tmp_path / "pruned.db", keep_audio=1)
    with TestClient(create_app(pruning, TOKEN)) as client:
        first, second = _post(client, "fan", fan_clip(8)), _post(client, "fan", fan_clip(9))
        assert "newest 1 clips" in client.get(f"/events/{first}/audio").json()["detail"]
        assert client.get(f"/events/{second}/audio").status_code == 200
    pruning.close()


def test_protected_reads_cover_the_event_routes_not_the_page(
    models_dir: Path, tmp_path: Path
) -> None:
    m = _monitor(models_dir, tmp_path / "events.db")
    with TestClient(create_app(m, TOKEN, protect_reads=True)) as client:
        event = _post(client, "fan", fan_clip(3))
        for path in (
            f"/events/{event}/audio",
            f"/events/{event}/map.png",
            f"/events/{event}/spectrogram.png",
        ):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=AUTH).status_code == 200, path
        assert (
            client.get("/").status_code == 200
            and client.get("/dashboard/dashboard.js").status_code == 200
        )
    m.close()
