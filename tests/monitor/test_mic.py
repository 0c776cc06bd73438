"""`stethoscope watch --mic`: blocks from an input stream are scored like `StreamingScorer`
scores the same samples and recorded; lost input is counted and said. The stream is a fake with
sounddevice.InputStream's interface, calling the callback from its own thread, as PortAudio
does, so the tests run where no sound card exists."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from stethoscope.cli import main
from stethoscope.engine import RunContext
from stethoscope.monitor.mic import MicListener
from stethoscope.monitor.service import Monitor
from stethoscope.realtime import StreamingScorer
from stethoscope.systems import load_system

from .conftest import fan_clip

CTX = RunContext(progress=False, threads=1)
RATE = 16_000


class FakeInputStream:
    """sounddevice.InputStream's constructor, ``start``/``stop``/``close`` and ``active``: a
    thread plays ``wave`` to the callback in ``blocksize`` blocks of shape (frames, 1);
    block numbers in ``overflow_at`` carry PortAudio's input-overflow flag."""

    def __init__(
        self,
        wave: np.ndarray,
        overflow_at: tuple[int, ...] = (),
        *,
        samplerate: int,
        blocksize: int,
        device: Any,
        channels: int,
        dtype: str,
        callback: Callable[..., None],
    ) -> None:
        assert channels == 1 and dtype == "float32" and samplerate == RATE
        self.wave, self.overflow_at, self.blocksize, self.callback = (
            wave,
            overflow_at,
            blocksize,
            callback,
        )
        self.active, self.closed = False, False
        self._thread = threading.Thread(target=self._play)

    def start(self) -> None:
        self.active = True
        self._thread.start()

    def _play(self) -> None:
        for i, start in enumerate(range(0, len(self.wave), self.blocksize)):
            if not self.active:
                return
            block = self.wave[start : start + self.blocksize].reshape(-1, 1)
            self.callback(
                block, len(block), None, SimpleNamespace(input_overflow=i in self.overflow_at)
            )
        self.active = False  # the recording ran out, as a device that went away

    def stop(self) -> None:
        self.active = False
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.closed = True


def fake(
    wave: np.ndarray, streams: list[FakeInputStream], overflow_at: tuple[int, ...] = ()
) -> Callable[..., Any]:
    def factory(**kwargs: Any) -> FakeInputStream:
        streams.append(FakeInputStream(wave, overflow_at, **kwargs))
        return streams[-1]

    return factory


def test_fake_microphone_scores_like_the_streaming_scorer(
    monitor: Monitor, models_dir: Path
) -> None:
    wave = np.concatenate([fan_clip(1, 2.0), fan_clip(2, 2.0)])  # 4 s
    streams: list[FakeInputStream] = []
    seen: list[float] = []
    listener = MicListener(
        monitor,
        "fan",
        RATE,
        window=2.0,
        hop=0.5,
        source="mic:fake",
        factory=fake(wave, streams),
        on_score=lambda event, end: seen.append(end),
    )
    stats = listener.run(threading.Event())  # returns when the fake stream runs out
    expected = list(
        StreamingScorer(load_system(models_dir / "fan"), 2.0, 0.5, RATE, CTX).push(wave)
    )
    assert len(expected) == 5 and stats.scores == 5 and seen == [r.end_seconds for r in expected]
    events = monitor.store.events("fan", newest_first=False)
    assert [e["score"] for e in events] == pytest.approx(
        [r.score for r in expected], rel=1e-4, abs=1e-9
    )
    assert [e["decision"] for e in events] == [r.decision for r in expected]
    assert {e["source"] for e in events} == {"mic:fake"}
    assert (stats.samples, stats.overflows, stats.dropped_blocks, stats.gaps) == (
        len(wave),
        0,
        0,
        0,
    )
    assert streams[0].closed and listener.blocksize == 1600


def test_an_input_overflow_is_counted_and_restarts_the_window(monitor: Monitor) -> None:
    wave = np.concatenate([fan_clip(3, 2.0), fan_clip(4, 2.0)])
    warned: list[str] = []
    listener = MicListener(
        monitor,
        "fan",
        RATE,
        window=2.0,
        hop=0.5,
        factory=fake(wave, [], overflow_at=(10,)),
        warn=warned.append,
    )
    stats = listener.run(threading.Event())
    assert (stats.overflows, stats.gaps) == (1, 1)
    assert (
        len(warned) == 1
        and "1 PortAudio input overflow" in warned[0]
        and "before 1.0 s" in warned[0]
    )
    # blocks 10.. (3 s) after the gap: windows end at 2, 2.5, 3 s of the fresh window; none spans
    # the gap
    assert stats.scores == 3 and len(monitor.store.events("fan")) == 3


def test_a_full_queue_drops_blocks_and_says_so(monitor: Monitor) -> None:
    warned: list[str] = []
    listener = MicListener(
        monitor, "fan", RATE, window=1.0, hop=1.0, queue_seconds=0.3, warn=warned.append
    )
    block = fan_clip(5, 0.1).reshape(-1, 1)
    for _ in range(5):  # PortAudio delivering while the consumer is busy: 3 blocks fit
        listener.callback(block, len(block), None, None)
    assert listener.stats.dropped_blocks == 2
    listener.callback(block, len(block), None, None)  # room again? no: still full
    assert listener.stats.dropped_blocks == 3
    for _ in range(3):
        listener._take(*listener._queue.get_nowait())
    listener.callback(
        block, len(block), None, None
    )  # the first block after the loss carries the gap
    listener._take(*listener._queue.get_nowait())
    assert listener.stats.gaps == 1 and "3 block(s) dropped by a full queue" in warned[0]


def test_cli_mic_errors_are_clear(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = str(tmp_path / "e.db")
    for argv, message in [
        (["watch", "--mic", "--models", str(models_dir), "--db", db], "--mic needs --machine"),
        (
            [
                "watch",
                "--mic",
                "--machine",
                "fan",
                "--models",
                str(models_dir),
                "--db",
                db,
                "--recursive",
            ],
            "are for watching a folder",
        ),
        (
            [
                "watch",
                "--mic",
                "--machine",
                "fan",
                "--models",
                str(models_dir),
                "--db",
                db,
                "--input-device",
                "no-such-card-xyz",
            ],
            "python3 -m sounddevice",
        ),
        (
            [
                "watch",
                "--mic",
                "--machine",
                "fan",
                "--models",
                str(models_dir),
                "--db",
                db,
                "--device",
                "USB Audio",
            ],
            "the sound card is --input-device",
        ),
        (
            [
                "watch",
                "--mic",
                "--machine",
                "fan",
                "--models",
                str(models_dir),
                "--db",
                db,
                "--max-lag",
                "0",
            ],
            "--max-lag must be 0.1 to 600 seconds, got 0",
        ),
        (
            ["watch", str(tmp_path), "--models", str(models_dir), "--db", db, "--max-lag", "5"],
            "--max-lag are for --mic",
        ),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        if (
            "libportaudio2" in err
        ):  # no PortAudio library on this machine: the message says what to install
            message = "pip install 'stethoscope[mic]'"
        assert message in err and "Traceback" not in err, (argv, err)


def test_a_window_whose_score_is_not_finite_is_said_and_the_listener_goes_on(
    monitor: Monitor,
) -> None:
    poison = (fan_clip(6, 2.0) * np.float32(1e25)).astype(np.float32)  # NaN log-mel, NaN score
    wave = np.concatenate([poison, fan_clip(7, 2.0), fan_clip(8, 2.0)])
    warned: list[str] = []
    listener = MicListener(
        monitor, "fan", RATE, window=2.0, hop=2.0, factory=fake(wave, []), warn=warned.append
    )
    stats = listener.run(threading.Event())
    assert (
        stats.scores == 2 and len(monitor.store.events("fan")) == 2
    )  # the poison window alone is not stored
    assert len(warned) == 1 and "window ending at 2.0 s" in warned[0] and "not finite" in warned[0]


def test_kept_audio_is_the_first_window_then_each_hop(monitor: Monitor) -> None:
    """As the websocket stream keeps it: the kept clips of one listening session follow each
    other without overlap and, put end to end, are the samples heard (16-bit FLAC)."""
    wave = np.concatenate([fan_clip(9, 2.0), fan_clip(10, 2.0)])
    listener = MicListener(monitor, "fan", RATE, window=2.0, hop=0.5, factory=fake(wave, []))
    assert listener.run(threading.Event()).scores == 5
    events = monitor.store.events("fan", newest_first=False)
    clips = [
        sf.read(io.BytesIO(monitor.store.clip_audio(e["id"])), dtype="float32")[0] for e in events
    ]
    assert [len(c) for c in clips] == [32_000] + [8_000] * 4
    assert np.concatenate(clips) == pytest.approx(wave, abs=1.0 / 2**15)
