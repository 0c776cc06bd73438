"""Real-time scoring: feed audio as it arrives, get a score for every hop of a sliding window."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .engine import RunContext
from .errors import ConfigError
from .systems.base import System


@dataclass(frozen=True)
class StreamScore:
    """The score of the window that ends ``end_seconds`` into the stream, and that window's
    samples (at the stream's rate), for callers that keep the audio they scored."""

    end_seconds: float
    score: float
    decision: int
    window: np.ndarray | None = field(default=None, repr=False, compare=False)


class StreamingScorer:
    """Keeps the last ``window_seconds`` of a mono stream and scores it every ``hop_seconds``.

    ``push(samples)`` accepts any chunk size (e.g. 1,024-sample sound-card buffers) and returns
    the scores of the windows completed by that chunk. The first score comes once a full
    window has arrived, so decisions see as much context as the model was trained on.
    """

    def __init__(
        self,
        system: System,
        window_seconds: float = 10.0,
        hop_seconds: float = 1.0,
        sample_rate: int = 16_000,
        ctx: RunContext | None = None,
    ) -> None:
        if hop_seconds <= 0 or window_seconds <= 0:
            raise ConfigError(
                f"window and hop must be positive seconds, got {window_seconds} and {hop_seconds}"
            )
        self.system, self.sample_rate = system, sample_rate
        self.ctx = ctx or RunContext(progress=False)
        self.window = round(window_seconds * sample_rate)
        self.hop = round(hop_seconds * sample_rate)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._seen = 0  # samples received so far
        self._next_end = self.window

    def windows_completed_by(self, samples: int) -> int:
        """How many windows a `push` of ``samples`` more samples would score (a caller can
        refuse or pace a chunk before scoring it)."""
        total = self._seen + max(0, samples)
        return 0 if total < self._next_end else 1 + (total - self._next_end) // self.hop

    def push(self, samples: np.ndarray) -> list[StreamScore]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.isfinite(samples).all():
            raise ValueError("stream chunk contains NaN or infinite samples")
        self._buffer = np.concatenate([self._buffer, samples])
        self._seen += len(samples)
        windows, ends = [], []
        while self._seen >= self._next_end:
            stop = len(self._buffer) - (self._seen - self._next_end)
            windows.append(self._buffer[stop - self.window : stop])
            ends.append(self._next_end / self.sample_rate)
            self._next_end += self.hop
        keep = self._seen - (self._next_end - self.window)  # samples the next window still needs
        self._buffer = (
            self._buffer[len(self._buffer) - keep :]
            if 0 <= keep < len(self._buffer)
            else self._buffer
        )
        if not windows:
            return []
        scores = self.system.score_waveforms(windows, self.sample_rate, self.ctx)
        decisions = self.system.decide(scores)
        return [
            StreamScore(e, float(s), int(d), w)
            for e, s, d, w in zip(ends, scores, decisions, windows, strict=True)
        ]


def stream_file(
    scorer: StreamingScorer, wave: np.ndarray, chunk: int = 1024
) -> Iterator[StreamScore]:
    """Replay a recording through ``scorer`` in sound-card-sized chunks."""
    for start in range(0, len(wave), chunk):
        yield from scorer.push(wave[start : start + chunk])
