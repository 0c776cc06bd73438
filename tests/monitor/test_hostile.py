"""Hostile clients beside a scoring client, against a real ``stethoscope serve`` on loopback with
its default limits: slow headers (slowloris), oversized websocket frames, a foreign origin, and
10,000 dashboard reads (events, kept audio, pictures cycling through more events than the picture
cache holds), all at once. Scoring must keep answering: every posted clip 200, none slow, and
the reads finish in bounded time (answered 200, or 503 "busy" at once, never hung)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from .conftest import AUTH, Server, fan_clip, wav_bytes

READS = 10_000
READERS = 8
SLOW_CLIENTS = 16
READ_DEADLINE_S = 300


def _post(client: httpx.Client, url: str, seed: int, headers: dict | None = None) -> httpx.Response:
    return client.post(
        f"{url}/score",
        params={"machine": "fan", "source": f"s{seed}"},
        content=wav_bytes(fan_clip(seed)),
        headers={**AUTH, "Content-Type": "audio/wav", **(headers or {})},
        timeout=60,
    )


def _slowloris(port: int, closed_after: list[float]) -> None:
    """Headers one byte a second, never finished; records when the server cut it off."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            for byte in b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 60:
                sock.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:
            pass
        else:
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                sock.recv(10)
    closed_after.append(time.monotonic() - start)


def _reader(
    url: str, ids: list[int], count: int, offset: int, statuses: Counter, lock: threading.Lock
) -> None:
    with httpx.Client(timeout=60) as client:
        for i in range(offset, offset + count):
            event = ids[i % len(ids)]
            path = (
                f"/events/{event}/spectrogram.png"
                if i % 50 == 0
                else f"/events/{event}/audio"
                if i % 5 == 0
                else f"/events?limit=50&after_id={event}"
            )
            status = client.get(f"{url}{path}").status_code
            with lock:
                statuses[status] += 1


def test_scoring_keeps_answering_beside_hostile_clients(models_dir: Path, tmp_path: Path) -> None:
    srv = Server(
        models_dir, tmp_path / "events.db", tmp_path / "serve.log", ["--workers", "1"]
    ).start()
    try:
        with httpx.Client() as client:  # 40 events with audio: more than the 32 pictures cached
            ids = [_post(client, srv.url, seed).json()["id"] for seed in range(40)]
        statuses: Counter = Counter()
        lock, closed_after, scores = threading.Lock(), [], []
        stop = threading.Event()

        def scorer() -> None:
            with httpx.Client() as client:
                seed = 1000
                while not stop.is_set():
                    start = time.monotonic()
                    answer = _post(client, srv.url, seed)
                    scores.append((answer.status_code, time.monotonic() - start))
                    seed += 1

        threads = [
            threading.Thread(target=_slowloris, args=(srv.port, closed_after))
            for _ in range(SLOW_CLIENTS)
        ]
        threads += [
            threading.Thread(
                target=_reader,
                args=(srv.url, ids, READS // READERS, r * (READS // READERS), statuses, lock),
            )
            for r in range(READERS)
        ]
        scoring = threading.Thread(target=scorer)
        start = time.monotonic()
        for thread in [scoring, *threads]:
            thread.start()

        # meanwhile: oversized frames, a frame completing too many windows, a foreign origin
        for _ in range(3):
            with connect(
                f"ws://127.0.0.1:{srv.port}/stream/fan", additional_headers=AUTH, max_size=None
            ) as ws:
                ws.send(np.zeros(600_000, "<f4").tobytes())  # 2.4 MB: over the 1 MiB frame limit
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=30)
                assert closed.value.rcvd.code == 1009
        with connect(
            f"ws://127.0.0.1:{srv.port}/stream/fan?window=1&hop=0.1", additional_headers=AUTH
        ) as ws:
            ws.send(
                np.zeros(16_000 * 4, "<f4").tobytes()
            )  # 4 s at a 0.1 s hop: 31 windows in one frame
            assert "per frame" in ws.recv(timeout=30)
        with httpx.Client() as client:
            assert {
                _post(client, srv.url, s, {"Origin": "http://evil.example"}).status_code
                for s in range(20)
            } == {403}
        with pytest.raises(InvalidStatus) as denied:
            connect(
                f"ws://127.0.0.1:{srv.port}/stream/fan",
                additional_headers=AUTH,
                origin="http://evil.example",
            )
        assert denied.value.response.status_code == 403

        for thread in threads:
            thread.join(timeout=READ_DEADLINE_S)
        elapsed = time.monotonic() - start
        stop.set()
        scoring.join(timeout=120)
        assert not any(t.is_alive() for t in threads), (
            f"reads still running after {READ_DEADLINE_S} s"
        )
    finally:
        srv.stop()

    assert sum(statuses.values()) == READS and set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= READS // 2, (
        statuses
    )  # most reads are served; the rest told "busy" at once
    assert len(closed_after) == SLOW_CLIENTS and max(closed_after) < 30, (
        closed_after
    )  # cut off at the 10 s timeout
    codes = Counter(code for code, _ in scores)
    latencies = sorted(seconds for _, seconds in scores)
    assert codes == {200: len(scores)} and len(scores) >= 10, codes
    assert latencies[-1] < 15 and latencies[len(latencies) // 2] < 3, latencies
    print(
        f"{READS} reads in {elapsed:.1f} s ({dict(statuses)}); {len(scores)} scores, p50 "
        f"{latencies[len(latencies) // 2]:.2f} s, max {latencies[-1]:.2f} s; "
        "slow clients cut after "
        f"{min(closed_after):.1f}-{max(closed_after):.1f} s"
    )
