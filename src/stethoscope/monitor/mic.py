"""Listen to a sound card and score a sliding window: PortAudio (through sounddevice) calls
`MicListener.callback` with each block of samples on its own thread; the callback only copies
the block into a bounded queue. The consumer (`MicListener.run`) feeds the blocks to the
machine's `realtime.StreamingScorer` (the scorer of the ``stream`` verb and the websocket) and
records each window's score in the event store, with the audio new to it when the store keeps
audio (as the websocket stream: the first window after a start or a gap whole, then each hop).

Lost input is reported, never silent: PortAudio's input-overflow flag (the driver dropped
samples) and a full queue (scoring slower than real time) are counted in `MicStats`, said once
per gap, and the window starts afresh after a gap, so that no window splices audio from both
sides of it.

The stream comes from a factory called like ``sounddevice.InputStream(samplerate=, blocksize=,
device=, channels=1, dtype="float32", callback=)``; the object needs ``start()``, ``stop()``,
``close()`` and ``active``. Tests inject a fake one where no sound card exists.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import AudioError, ConfigError, StethoscopeError
from ..realtime import StreamingScorer
from .service import Monitor, ScoreEvent

BLOCK_SECONDS = 0.1
QUEUE_SECONDS = 30.0  # how far scoring may fall behind the sound card (--max-lag) ...
MAX_QUEUE_SECONDS = 600.0  # ... at most (10 min of 48 kHz float32: 110 MiB)
TIMEOUT_S = 0.2  # how often the consumer looks at ``stop`` and at whether the stream still runs
MIC_HINT = "pip install 'stethoscope[mic]' (and PortAudio: apt-get install libportaudio2)"


class InputStream(Protocol):
    """What the listener uses of ``sounddevice.InputStream``."""

    @property
    def active(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


StreamFactory = Callable[..., InputStream]


class MicError(StethoscopeError):
    """The sound card cannot be used: sounddevice or PortAudio missing, or the device refused."""


def sounddevice_module() -> Any:
    """The ``sounddevice`` module, or `MicError` saying what to install."""
    try:
        import sounddevice
    except ImportError as err:
        raise MicError(f"--mic needs sounddevice ({err}): {MIC_HINT}") from None
    except OSError as err:  # sounddevice is installed but the PortAudio library is not
        raise MicError(f"--mic: {err}: {MIC_HINT}") from None
    return sounddevice


def check_max_lag(seconds: float) -> float:
    """``seconds`` if it is a usable queue length (``--max-lag``), else `ConfigError`."""
    if not BLOCK_SECONDS <= seconds <= MAX_QUEUE_SECONDS:
        raise ConfigError(
            f"--max-lag must be {BLOCK_SECONDS:g} to {MAX_QUEUE_SECONDS:g} seconds, got {seconds:g}"
        )
    return seconds


@dataclass
class MicStats:
    """Counts of one listening session: blocks and samples received, windows scored, PortAudio
    input overflows, blocks dropped because the queue was full, and gaps said."""

    blocks: int = 0
    samples: int = 0
    scores: int = 0
    overflows: int = 0
    dropped_blocks: int = 0
    gaps: int = 0


class MicListener:
    """Scores ``machine`` from an input device (see the module docstring)."""

    def __init__(
        self,
        monitor: Monitor,
        machine: str,
        rate: int,
        window: float = 10.0,
        hop: float = 1.0,
        device: int | str | None = None,
        source: str = "mic",
        factory: StreamFactory | None = None,
        queue_seconds: float = QUEUE_SECONDS,
        warn: Callable[[str], None] = lambda message: None,
        on_score: Callable[[ScoreEvent, float], None] = lambda event, end: None,
    ) -> None:
        if not 1_000 <= rate <= 384_000:
            raise ConfigError(f"--rate must be a sample rate in Hz (1000 to 384000), got {rate}")
        self.monitor, self.machine, self.rate, self.device, self.source = (
            monitor,
            machine,
            rate,
            device,
            source,
        )
        self.window, self.hop = window, hop
        self.scorer = self._scorer()  # checks machine, window and hop now, before any device opens
        self.factory = factory
        self.blocksize = max(1, round(rate * BLOCK_SECONDS))
        self._queue: queue.Queue[tuple[np.ndarray, bool]] = queue.Queue(
            maxsize=max(1, math.ceil(check_max_lag(queue_seconds) / BLOCK_SECONDS))
        )
        self._gap = False  # touched by the callback's thread only
        self._whole = True  # the next kept clip is the whole window (start, or after a gap)
        self.warn, self.on_score = warn, on_score
        self.stats = MicStats()
        self.received = 0  # samples the consumer took from the queue: the stream's clock

    def _scorer(self) -> StreamingScorer:
        return self.monitor.stream(self.machine, self.rate, self.window, self.hop)

    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: queue a copy of the block without ever blocking; count losses."""
        del frames, time_info
        if getattr(status, "input_overflow", False):
            self.stats.overflows += 1
            self._gap = True
        try:
            self._queue.put_nowait((np.array(indata[:, 0], dtype=np.float32), self._gap))
        except queue.Full:
            self.stats.dropped_blocks += 1
            self._gap = True
        else:
            self._gap = False

    def open(self) -> InputStream:
        """The input stream from the factory (default ``sounddevice.InputStream``), started."""
        factory = self.factory or sounddevice_module().InputStream
        stream = None
        try:
            stream = factory(
                samplerate=self.rate,
                blocksize=self.blocksize,
                device=self.device,
                channels=1,
                dtype="float32",
                callback=self.callback,
            )
            stream.start()
        except (
            Exception
        ) as err:  # PortAudioError, ValueError (no such device): the library's own message
            if stream is not None:
                stream.close()
            raise MicError(
                "cannot record from input device "
                f"{self.device if self.device is not None else 'default'}"
                f" at {self.rate} Hz: {err}; list devices with `python3 -m sounddevice`"
            ) from None
        return stream

    def run(self, stop: threading.Event) -> MicStats:
        """Score windows until ``stop`` is set or the stream ends (device gone, fake exhausted)."""
        stream = self.open()
        try:
            while not stop.is_set():
                try:
                    block, gap = self._queue.get(timeout=TIMEOUT_S)
                except queue.Empty:
                    if not stream.active:
                        break
                    continue
                self._take(block, gap)
        finally:
            stream.stop()
            stream.close()
        return self.stats

    def _take(self, block: np.ndarray, gap: bool) -> None:
        if gap:
            self.stats.gaps += 1
            self.warn(
                f"input lost before {self.received / self.rate:.1f} s "
                f"({self.stats.overflows} PortAudio input overflow(s), "
                f"{self.stats.dropped_blocks} block(s) dropped by a full queue so far); the "
                f"{self.window:g} s window starts afresh"
            )
            self.scorer = self._scorer()
            self._whole = True
        self.stats.blocks += 1
        self.stats.samples += len(block)
        self.received += len(block)
        for result in self.scorer.push(block):
            new = result.window
            if new is not None and not self._whole:
                new = new[len(new) - self.scorer.hop :]
            try:
                event = self.monitor.record(
                    self.machine,
                    result.score,
                    result.decision,
                    self.source,
                    audio=self.monitor.audio_to_keep(new, self.rate),
                )
            except (
                AudioError
            ) as err:  # a window whose score is not finite: said, not stored, not fatal
                self.warn(f"window ending at {result.end_seconds:.1f} s: {err.problem}")
                continue
            self._whole = False
            self.stats.scores += 1
            self.on_score(event, result.end_seconds)
