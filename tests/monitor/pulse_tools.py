"""Helpers of the PulseAudio tests: a player that feeds the sound server one continuous
stream, and the signal maths that finds a known clip in what the watcher heard."""

from __future__ import annotations

import queue
import subprocess
import threading

import numpy as np

RATE = 16_000


class Player:
    """``pacat`` playing raw 16 kHz float32 into the null sink from a pipe: silence, until
    `play` queues a clip, then silence again. One continuous stream, so the sound server
    never rewinds and re-mixes what its monitor already delivered."""

    CHUNK = 800  # 50 ms

    def __init__(self, env: dict[str, str], sink: str) -> None:
        self.proc = subprocess.Popen(
            [
                "pacat",
                "--playback",
                f"--device={sink}",
                "--raw",
                "--format=float32le",
                f"--rate={RATE}",
                "--channels=1",
                "--latency-msec=1000",  # 1 s ahead: a busy CPU does not starve the sink
            ],
            env=env,
            stdin=subprocess.PIPE,
        )
        self._clips: queue.Queue[np.ndarray] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        silence = np.zeros(self.CHUNK, np.float32)
        assert self.proc.stdin is not None
        while not self._stop.is_set():
            try:
                data = self._clips.get_nowait()
            except queue.Empty:
                data = silence
            try:
                self.proc.stdin.write(data.astype("<f4").tobytes())
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return

    def play(self, wave: np.ndarray) -> None:
        self._clips.put(np.asarray(wave, np.float32))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.proc.terminate()
        self.proc.wait(timeout=30)


def find_clip(heard: np.ndarray, clip: np.ndarray) -> int:
    """Where ``clip`` starts in ``heard``: the peak of their cross-correlation."""
    n = len(heard) + len(clip)
    corr = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(clip, n)), n)
    return int(np.argmax(corr[: len(heard)]))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two equally long signals."""
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def delayed(wave: np.ndarray, delay: float) -> np.ndarray:
    """``wave`` delayed by ``delay`` samples, fractions included (a linear phase, zero-padded
    so nothing wraps round)."""
    n = len(wave) + 64
    freqs = np.fft.rfftfreq(n)
    return np.fft.irfft(np.fft.rfft(wave, n) * np.exp(-2j * np.pi * freqs * delay), n)[: len(wave)]


SUBSAMPLE = np.arange(-12, 13) / 12  # delays tried, in 16 kHz samples: a 48 kHz sample is 1/3


def best_delay(part: np.ndarray, clip: np.ndarray) -> float:
    """The sub-sample delay of ``clip`` that best matches ``part``.

    Through a 48 kHz sink the clip reaches the watcher on a 48 kHz grid whose phase against
    the watcher's own 16 kHz grid is set by timing: 0, 1/3 or 2/3 of a sample. Only a
    whole-sample offset is found by `find_clip`; at a third of a sample this clip correlates
    only 0.964 with itself (its energy reaches 8 kHz), a shift rather than damage."""
    return float(max(SUBSAMPLE, key=lambda d: correlation(part, delayed(clip, d))))


def aligned_correlation(part: np.ndarray, clip: np.ndarray) -> float:
    """Correlation of ``part`` with ``clip`` at its best sub-sample delay."""
    return correlation(part, delayed(clip, best_delay(part, clip)))
