"""Score every audio file a recorder drops into a folder, once and only once, across restarts.

A recording is identified by the watched folder (its absolute path), the file's path below it,
its size and its mtime (nanoseconds): a file rewritten under the same name is a new recording
and is scored again. It is *done* when the store holds its mark (`store.FileMark`) in the table
``watched_files``; the mark of a scored file is committed in the same transaction as its score
(`EventStore.record_score`), so a watcher killed at any moment leaves each recording either
scored and marked or neither, and a restart scores exactly the ones not marked. A second mark
of one recording (two watchers on one folder) fails on the table's unique key and rolls back
its score.

A file is scored once it is complete: its size and mtime unchanged for ``settle`` seconds.
Hidden names, temporary names (``.part``, ``.tmp``, ...) and names without an audio suffix are
ignored. New files are noticed through watchdog (inotify, FSEvents, ...) with a full rescan
every `RESCAN_S` seconds for events the operating system dropped, or by rescanning every
``poll`` seconds. Files whose machine is unknown, bad audio, audio whose score is not finite,
symbolic links, paths that resolve outside the folder, files over ``--max-file-mb`` and any
other error of one file are marked skipped with the reason (so a restart does not try them
again); none stops the watcher. A failing event store leaves files pending: they are tried
again after a backoff (1 s doubling to a minute), and the monitor's health is degraded meanwhile.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..data.audio import SAMPLE_RATE, decode_checked
from ..data.clip import parse_channel
from ..data.policy import SKIP_HINT, AudioPolicy
from ..errors import AudioError, ConfigError, StethoscopeError
from .intake import read_capped, refusal, too_big
from .service import SOURCE_MAX, Monitor
from .store import AlreadyDone, FileMark, StoreError
from .watch_scan import FolderScanner, Pending, is_watched_name

__all__ = ["DEFAULT_MAX_FILE_MB", "FolderWatcher", "WatchStats", "is_watched_name", "source_label"]

RESCAN_S = 60.0
RETRY_MAX_S = 60.0  # longest wait between tries of a failing event store
DEFAULT_MAX_FILE_MB = 256.0  # larger files are skipped unread (--max-file-mb)
TICK_S = 0.2


def source_label(key: str) -> str:
    """The event's source: the file's path below the folder (its end, when too long)."""
    label = "".join(c if c.isprintable() else "?" for c in key)
    return label if len(label) <= SOURCE_MAX else "..." + label[-(SOURCE_MAX - 3) :]


@dataclass
class WatchStats:
    """What a watcher did: files scored, marked skipped, and found done by another watcher."""

    scored: int = 0
    skipped: int = 0
    already: int = 0


@dataclass
class FolderWatcher(FolderScanner):
    """Watches ``folder`` for ``monitor``'s machines (see the module docstring).

    ``machine`` scores every file for that machine; without it a file's machine is the name of
    its first sub-folder (``DIR/fan/clip.wav`` -> fan). Files lie in ``folder`` or one
    sub-folder deep, any depth with ``recursive``. ``poll`` (seconds) rescans instead of using
    watchdog. ``on_bad_audio`` is the audio policy (`data.policy`), applied per file; ``channel``
    ("0", "1", ..., "mean") overrides each model's own channel."""

    monitor: Monitor
    folder: str | Path
    machine: str | None = None
    recursive: bool = False
    settle: float = 2.0
    poll: float | None = None
    on_bad_audio: str | None = None
    channel: str | None = None
    max_file_mb: float = DEFAULT_MAX_FILE_MB
    retry_first: float = 1.0
    retry_max: float = RETRY_MAX_S
    say: Callable[[str], None] = lambda message: None
    warn: Callable[[str], None] = lambda message: None
    stats: WatchStats = field(default_factory=WatchStats)

    def __post_init__(self) -> None:
        self.root = Path(self.folder).expanduser().resolve()
        if not self.root.is_dir():
            raise ConfigError(f"watch {self.folder}: no such folder")
        if self.machine is not None:
            self.monitor.model(self.machine)  # UnknownMachine names the served ones
        if self.settle < 0 or (self.poll is not None and self.poll <= 0):
            raise ConfigError(
                f"need --settle >= 0 and --poll > 0 seconds, got {self.settle:g} and {self.poll}"
            )
        AudioPolicy(self.on_bad_audio)  # a ConfigError now for an unknown policy
        if not 0 < self.max_file_mb < float("inf"):
            raise ConfigError(
                f"--max-file-mb must be a positive number of MB, got {self.max_file_mb}"
            )
        self.max_file_bytes = int(self.max_file_mb * 2**20)
        self._backoff, self._retry_at = 0.0, 0.0
        self._channels = {
            m: parse_channel(
                self.channel
                if self.channel is not None
                else (s.system.run_ or {}).get("channel", 0)
            )
            for m, s in self.monitor.models.items()
        }
        self._pending: dict[str, Pending] = {}
        self._done: dict[str, tuple[int, int]] = {}  # key -> the (size, mtime_ns) known done
        self._events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._gone = False

    # -- scoring one file -------------------------------------------------------------------
    def machine_of(self, key: str) -> tuple[str | None, str]:
        """(machine, "") for a file, or (None, why it has none)."""
        if self.machine is not None:
            return self.machine, ""
        parts = key.split("/")
        if len(parts) == 1:
            return None, (
                "no machine: the file lies in the watched folder itself (put it in "
                "DIR/<machine>/ or pass --machine)"
            )
        if parts[0] in self.monitor.models:
            return parts[0], ""
        served = ", ".join(sorted(self.monitor.models))
        return None, f"no served model for machine folder {parts[0]!r} (served: {served})"

    def process(self, key: str, item: Pending) -> None:
        """Score a settled file and mark it done, or mark it skipped with the reason. Any error
        of this one file is recorded against it (so a restart does not retry it forever) and
        the watcher goes on; a failing event store leaves the file pending and backs off."""
        mark = FileMark(str(self.root), key, item.size, item.mtime_ns)
        try:
            try:
                self._process(key, item, mark)
            except (StoreError, AlreadyDone):
                raise
            except Exception as err:  # one file, whatever it does, never stops the watcher
                reason = (
                    str(err)
                    if isinstance(err, StethoscopeError)
                    else f"{type(err).__name__}: {err}"
                )
                self._skip(
                    key, mark, f"could not be scored ({reason[:800]})", self.machine_of(key)[0]
                )
        except StoreError as err:
            self._store_failed(err)
            return
        if self.monitor.health.degraded is False and self._backoff:
            self.say("event store: writes work again")
            self._backoff = 0.0

    def _process(self, key: str, item: Pending, mark: FileMark) -> None:
        machine, why = self.machine_of(key)
        if machine is None:
            self._skip(key, mark, why, None)
            return
        refused = refusal(self.root, item.path, item.size, self.max_file_bytes)
        if refused is not None:
            self._skip(key, mark, refused, machine)
            return
        try:
            raw = read_capped(item.path, self.max_file_bytes)
            st = item.path.stat()
        except FileNotFoundError:
            self._pending.pop(key, None)  # removed while being read: nothing to score
            return
        except OSError as err:
            self._skip(key, mark, f"cannot read file ({err.strerror or err})", machine)
            return
        if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
            self._pending[key] = Pending(item.path, st.st_size, st.st_mtime_ns, time.monotonic())
            return  # written to again: wait for it to settle anew
        if len(raw) > self.max_file_bytes:
            self._skip(key, mark, too_big(len(raw), self.max_file_bytes), machine)
            return
        policy, found = self._policy()
        served = self.monitor.model(machine)
        try:
            wave, _ = decode_checked(
                raw,
                item.path,
                SAMPLE_RATE,
                self._channels[machine],
                served.system.feature_request().min_seconds,
                policy,
            )
            del raw
            for message in found:
                self.warn(message)
            event = self.monitor.score_wave(
                machine, wave, SAMPLE_RATE, source_label(key), found, mark, name=str(item.path)
            )
        except AudioError as err:
            skipped = [f.reason for f in policy.findings if f.action == "skipped"]
            self._skip(
                key, mark, "; ".join(skipped) or err.problem.removesuffix(SKIP_HINT), machine
            )
            return
        except AlreadyDone:
            self.stats.already += 1
        else:
            self.stats.scored += 1
            verdict = "ANOMALY" if event.decision else "normal"
            self.say(f"{key}: {machine} score {event.score:.6g} ({verdict}), event {event.id}")
        self._finish(key, mark)

    def _store_failed(self, err: StoreError) -> None:
        """The store failed: the file stays pending, and nothing is tried before the backoff ends
        (1 s, doubling up to `RETRY_MAX_S`); the monitor's health is degraded meanwhile."""
        self.monitor.health.failed(err)
        self._backoff = min(self.retry_max, self._backoff * 2 or self.retry_first)
        self._retry_at = time.monotonic() + self._backoff
        self.warn(f"event store failed ({err}); trying again in {self._backoff:g} s")

    def _policy(self) -> tuple[AudioPolicy, list[str]]:
        """A fresh policy per file, so that a watcher running for months keeps no per-file state."""
        found: list[str] = []
        return AudioPolicy(
            self.on_bad_audio, say=found.append, max_seconds=self.monitor.max_seconds
        ), found

    def _skip(self, key: str, mark: FileMark, reason: str, machine: str | None) -> None:
        try:
            self.monitor.write(
                lambda: self.monitor.store.mark_skipped(mark, reason, machine), tries=1
            )
        except AlreadyDone:
            self.stats.already += 1
        else:
            self.stats.skipped += 1
            self.warn(f"{self.root / key}: skipped: {reason}")
        self._finish(key, mark)

    def _finish(self, key: str, mark: FileMark) -> None:
        self._pending.pop(key, None)
        self._done[key] = (mark.size, mark.mtime_ns)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> WatchStats:
        """Catch up on the folder, then score new files until ``stop`` is set."""
        observer = self._observe()
        interval = self.poll if observer is None else RESCAN_S
        assert interval is not None  # `_observe` set the polling interval where it gave no observer
        try:
            last_scan = -float("inf")
            while not stop.is_set():
                now = time.monotonic()
                if now - last_scan >= interval and now >= self._retry_at:
                    try:
                        self.scan()
                        last_scan = now
                    except (
                        StoreError
                    ) as err:  # the marks could not be read: scan again after the backoff
                        self._store_failed(err)
                self.step(stop)
                stop.wait(min(TICK_S, interval))
        finally:
            if observer is not None:
                observer.stop()
                observer.join(timeout=5)
        return self.stats

    def step(self, stop: threading.Event | None = None) -> int:
        """Take in the change events, then score (or skip) every settled file: how many were
        handled. `run` calls it in a loop; tests call it after `scan` for one round."""
        if time.monotonic() < self._retry_at:
            return 0  # the event store failed: wait for the backoff to end
        try:
            self._drain_events()
        except StoreError as err:
            self._store_failed(err)
            return 0
        handled = 0
        for key, item in self._ready():
            if (stop is not None and stop.is_set()) or time.monotonic() < self._retry_at:
                break
            self.process(key, item)
            handled += 1
        return handled
