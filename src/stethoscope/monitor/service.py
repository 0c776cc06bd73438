"""The monitor's core, without HTTP: the models of one folder, scoring a clip or a stream for a
machine, and recording every score in the event store before anyone is told about it.

`Monitor.score_clip` ("score one clip for machine M and record it") is what ``POST /score``
runs, and what a folder watcher reuses; `Monitor.stream` gives the `realtime.StreamingScorer`
behind the ``stream`` verb, so that a websocket scores exactly as that verb does.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import soxr

from ..data.audio import SAMPLE_RATE, decode_checked
from ..data.policy import SKIP_HINT, AudioPolicy
from ..data.quality import DEFAULT_MAX_SECONDS
from ..engine import RunContext
from ..errors import AudioError, CheckpointError, ConfigError
from ..realtime import StreamingScorer
from ..systems.base import load_system
from .operators import Operators
from .served import (
    SOURCE_MAX,
    ServedModel,
    UnknownMachine,
    check_machine_name,
    check_source,
    find_models,
    model_version,
    warm_up,
)
from .store import AlarmChange, EventStore, FileMark, Recorded
from .store_health import WRITE_TRIES, StoreHealth, retry_write

if TYPE_CHECKING:
    from .notify import Notifier

__all__ = [  # the served-model names live in `served`, the write retry in `store_health`
    "DEFAULT_KEEP_AUDIO",
    "SOURCE_MAX",
    "WRITE_TRIES",
    "Monitor",
    "ScoreEvent",
    "ServedModel",
    "StoreHealth",
    "UnknownMachine",
    "check_machine_name",
    "check_score",
    "check_source",
    "find_models",
    "flac_bytes",
    "model_version",
]

DEFAULT_KEEP_AUDIO = 1000


@dataclass(frozen=True)
class ScoreEvent:
    """A score as stored and answered: event id, time, the decision and what made it."""

    id: int
    time: float
    machine: str
    source: str
    score: float
    decision: int
    threshold: float
    system: str
    model_version: str
    alarm: AlarmChange | None = None
    warnings: list[str] = field(default_factory=list)
    muted: bool = False  # the machine was muted: no alarm could be raised (`Monitor.muted`)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["anomaly"] = bool(self.decision)
        return out


def check_score(score: float, name: str) -> float:
    """``score`` when finite, else an `AudioError` naming the clip: a NaN or infinite score says
    the audio cannot be used (e.g. samples far beyond full scale) and is never stored."""
    if not math.isfinite(score):
        raise AudioError(
            name,
            f"the model's score is {score} (not finite): the audio cannot be scored (samples "
            f"far beyond full scale?); nothing was stored",
        )
    return score


class Monitor:
    """The served models and the event store (see the module docstring)."""

    def __init__(
        self,
        models: dict[str, ServedModel],
        store: EventStore,
        ctx: RunContext,
        keep_audio: int = DEFAULT_KEEP_AUDIO,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        keep_bytes: int | None = None,
    ) -> None:
        if keep_bytes is not None and keep_bytes < 0:
            raise ConfigError(f"--keep-audio-mb must be 0 or more, got {keep_bytes / 2**20:g}")
        if keep_audio < 0:
            raise ConfigError(
                f"--keep-audio must be 0 (keep none) or more clips per machine, got {keep_audio}"
            )
        AudioPolicy(max_seconds=max_seconds)  # a ConfigError now for a bad limit
        self.models, self.store, self.ctx, self.keep_audio = models, store, ctx, keep_audio
        self.max_seconds = max_seconds  # longest clip decoded (--max-seconds), a runtime setting
        self.keep_bytes = (
            keep_bytes  # all kept audio fits in this many bytes (--keep-audio-mb); None: no budget
        )
        self.health = StoreHealth()
        self.notifier: Notifier | None = None  # set by --notify: the outbox rows each event adds
        self.operators = Operators(store)

    @classmethod
    def open(
        cls,
        models_dir: str | Path,
        db: str,
        ctx: RunContext,
        sync: str = "full",
        alarm: tuple[int, int] | None = None,
        say: Callable[[str], None] = lambda message: None,
        keep_audio: int = DEFAULT_KEEP_AUDIO,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        keep_bytes: int | None = None,
    ) -> Monitor:
        """Load every model of ``models_dir`` (warmed up with one score each) and open ``db``;
        the newest ``keep_audio`` scored clips of each machine keep their audio (0: none), all
        of it within ``keep_bytes`` (None: no byte budget; oldest dropped first); no clip over
        ``max_seconds`` is decoded."""
        found = find_models(models_dir)
        store = EventStore(db, sync, say=say)
        models = {}
        for machine, folder in found.items():
            system = load_system(folder)
            if system.threshold_ is None:
                raise CheckpointError(f"{folder}: the model has no decision threshold")
            store.ensure_machine(machine, alarm)
            version = model_version(folder)
            model_id = store.register_model(machine, system.name, version, system.threshold_)
            models[machine] = ServedModel(machine, system, version, model_id)
            warm_up(system, ctx)
            say(
                f"[{machine}] {system.name} model {version} "
                f"(threshold {system.threshold_:.6g}) from {folder}"
            )
        return cls(models, store, ctx, keep_audio, max_seconds, keep_bytes)

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
        self.store.close()

    def model(self, machine: str) -> ServedModel:
        served = self.models.get(check_machine_name(machine))
        if served is None:
            raise UnknownMachine(
                f"no model for machine {machine!r}; served: {', '.join(sorted(self.models))}"
            )
        return served

    def score_clip(
        self, machine: str, raw: bytes, source: str = "", channel: int = 0
    ) -> ScoreEvent:
        """Decode one clip (WAV, FLAC, anything libsndfile reads) from memory, score it for
        ``machine`` and record it; `AudioError` names what is wrong with unusable audio."""
        served = self.model(machine)
        check_source(source)
        found: list[str] = []
        try:
            wave, _ = decode_checked(
                raw,
                "request body",
                SAMPLE_RATE,
                channel,
                served.system.feature_request().min_seconds,
                AudioPolicy(say=found.append, max_seconds=self.max_seconds),
            )
        except AudioError as err:  # the CLI's hint about --on-bad-audio means nothing to a client
            raise AudioError(err.path, err.problem.removesuffix(SKIP_HINT)) from None
        return self.score_wave(machine, wave, SAMPLE_RATE, source, found, name="request body")

    def score_wave(
        self,
        machine: str,
        wave: np.ndarray,
        sample_rate: int,
        source: str = "",
        warnings: list[str] | None = None,
        mark: FileMark | None = None,
        name: str = "",
    ) -> ScoreEvent:
        """Score one in-memory mono waveform for ``machine`` and record it (with its audio,
        unless ``keep_audio`` is 0, and a watched file's ``mark``, see `record`); a score that
        is not finite is an `AudioError` naming the clip (``name``, else ``source``)."""
        served = self.model(machine)
        score = check_score(
            float(served.system.score_waveforms([wave], sample_rate, self.ctx)[0]),
            name or source or "clip",
        )
        return self.record(
            machine,
            score,
            int(served.system.decide(np.array([score]))[0]),
            source,
            warnings,
            self.audio_to_keep(wave, sample_rate),
            mark,
        )

    def audio_to_keep(self, wave: np.ndarray | None, sample_rate: int) -> bytes | None:
        """What the store keeps of a scored waveform: 16 kHz FLAC bytes, or None when audio
        is not kept (``keep_audio`` 0)."""
        if wave is None or not self.keep_audio:
            return None
        if sample_rate != SAMPLE_RATE:
            wave = soxr.resample(
                np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE, quality="HQ"
            )
        return flac_bytes(wave, SAMPLE_RATE)

    def record(
        self,
        machine: str,
        score: float,
        decision: int,
        source: str = "",
        warnings: list[str] | None = None,
        audio: bytes | None = None,
        mark: FileMark | None = None,
    ) -> ScoreEvent:
        """Commit a score of ``machine``'s served model (and ``audio``, FLAC bytes of the scored
        clip, when audio is kept) to the store; returns after the commit. ``mark`` (a watched
        file) commits in the same transaction (`EventStore.record_score`). A non-finite score is
        an `AudioError` (never stored); a failed write is tried `WRITE_TRIES` times with backoff,
        and `health` is degraded until a write succeeds. With a ``notifier`` (``--notify``) the
        event's outbox rows commit in the same transaction, and its dispatchers are woken after."""
        served = self.model(machine)
        check_source(source)
        check_score(score, source or "clip")
        muted = [False]

        def event(done: Recorded) -> ScoreEvent:
            return ScoreEvent(
                done.id,
                done.time,
                machine,
                source,
                score,
                decision,
                served.threshold,
                served.system.name,
                served.version,
                done.alarm,
                list(warnings or []),
                muted[0],
            )

        notifier = self.notifier
        also = None if notifier is None else lambda conn, done: notifier.enqueue(conn, event(done))

        def write() -> Any:  # the mute is read in each try: a store that fails is retried alike
            muted[0] = self.muted(machine) is not None
            return self.store.record_score(
                machine,
                served.model_id,
                score,
                decision,
                source,
                audio=audio,
                keep_audio=self.keep_audio,
                mark=mark,
                keep_bytes=self.keep_bytes,
                raise_alarm=not muted[0],
                also=also,
            )

        done = self.write(write, tries=1 if mark is not None else WRITE_TRIES)
        if notifier is not None:
            notifier.wake()
        return event(done)

    def muted(self, machine: str, at: float | None = None) -> dict[str, Any] | None:
        """The mute of ``machine`` in force at ``at`` (default now), or None: the one rule for
        whether an alarm of a machine may be raised or sent. A muted machine's clips are still
        scored and stored with their decisions; no new alarm is raised while the mute lasts (an
        active one still clears), and the first score after it applies the k-of-n rule to the
        last n decisions, muted ones included."""
        return self.operators.active_mute(machine, at)

    def write(self, call: Callable[[], Any], tries: int = WRITE_TRIES) -> Any:
        """Run one store write with `store_health.retry_write` (retried on `StoreError`, with
        backoff); `health` follows the outcome."""
        return retry_write(call, self.health, tries)

    def stream(
        self, machine: str, sample_rate: int, window_seconds: float, hop_seconds: float
    ) -> StreamingScorer:
        """The ``stream`` verb's scorer for ``machine``'s model (record its scores with
        `record`)."""
        return StreamingScorer(
            self.model(machine).system, window_seconds, hop_seconds, sample_rate, self.ctx
        )

    def describe(self) -> list[dict[str, Any]]:
        """The served machines: model, threshold, alarm rule, stored score count, active alarm."""
        stored = {row["name"]: row for row in self.store.machines()}
        return [
            {
                "machine": m,
                "system": s.system.name,
                "model_version": s.version,
                "threshold": s.threshold,
                "alarm_k": stored.get(m, {}).get("alarm_k"),
                "alarm_n": stored.get(m, {}).get("alarm_n"),
                "scores": stored.get(m, {}).get("scores", 0),
                "active_alarm": stored.get(m, {}).get("active_alarm"),
            }
            for m, s in sorted(self.models.items())
        ]


def flac_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """A mono waveform as 16-bit FLAC bytes (lossless at 16 bits; what the store keeps)."""
    buf = io.BytesIO()
    sf.write(
        buf,
        np.clip(np.asarray(wave, dtype=np.float32).reshape(-1), -1.0, 1.0),
        sample_rate,
        format="FLAC",
        subtype="PCM_16",
    )
    return buf.getvalue()
