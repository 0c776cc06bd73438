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

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.audio import SAMPLE_RATE, decode_checked
from ..data.clip import parse_channel
from ..data.policy import SKIP_HINT, AudioPolicy
from ..data.quality import is_audio_name, is_hidden
from ..errors import AudioError, ConfigError, StethoscopeError
from .intake import read_capped, refusal, too_big
from .service import SOURCE_MAX, Monitor
from .store import AlreadyDone, FileMark, StoreError

TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp")
RESCAN_S = 60.0
RETRY_MAX_S = 60.0  # longest wait between tries of a failing event store
DEFAULT_MAX_FILE_MB = 256.0  # larger files are skipped unread (--max-file-mb)
TICK_S = 0.2


def is_watched_name(name: str) -> bool:
    """A visible, non-temporary name with an audio suffix."""
    lowered = name.lower()
    return is_audio_name(name) and not lowered.endswith(TEMP_SUFFIXES) and not lowered.endswith("~")


def text_key(rel: str) -> str:
    """A relative path as storable text: names that are not UTF-8 keep their bytes as escapes."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


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
class _Pending:
    path: Path
    size: int
    mtime_ns: int
    since: float  # monotonic time since which size and mtime are unchanged


@dataclass
class FolderWatcher:
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
        self._pending: dict[str, _Pending] = {}
        self._done: dict[str, tuple[int, int]] = {}  # key -> the (size, mtime_ns) known done
        self._events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._gone = False

    # -- finding files --------------------------------------------------------------------
    def _key(self, path: Path) -> str | None:
        """The file's key below the folder, or None when it is not watched (depth, name)."""
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:
            return None
        if not parts or (len(parts) > 2 and not self.recursive) or any(is_hidden(p) for p in parts):
            return None
        return text_key("/".join(parts)) if is_watched_name(parts[-1]) else None

    def scan(self, below: Path | None = None) -> None:
        """Consider every watched file below ``below`` (default: the whole folder)."""
        start = below or self.root
        if not self.root.is_dir():
            if not self._gone:
                self.warn(f"watch {self.root}: the folder is gone; waiting for it to come back")
            self._gone = True
            return
        self._gone = False
        found: dict[str, Path] = {}
        for folder, dirs, names in os.walk(start):
            base = Path(folder)
            depth = len(base.relative_to(self.root).parts)
            dirs[:] = (
                []
                if depth >= 1 and not self.recursive
                else sorted(d for d in dirs if not is_hidden(d))
            )
            for name in names:
                key = self._key(base / name)
                if key is not None:
                    found[key] = base / name
        if below is None:  # forget done files that left the folder: memory stays bounded
            self._done = {k: v for k, v in self._done.items() if k in found}
        self._consider(found)

    def _consider(self, files: dict[str, Path]) -> None:
        """Add files that are neither pending nor done to the pending set."""
        fresh: dict[str, tuple[Path, int, int]] = {}
        for key, path in files.items():
            if key in self._pending:
                continue
            try:
                st = path.stat()
            except OSError:
                continue  # gone already
            identity = (st.st_size, st.st_mtime_ns)
            if self._done.get(key) != identity:
                fresh[key] = (path, *identity)
        done = self.monitor.store.done_files(str(self.root), list(fresh)) if fresh else {}
        now = time.monotonic()
        for key, (path, size, mtime_ns) in fresh.items():
            if (size, mtime_ns) in done.get(key, ()):
                self._done[key] = (size, mtime_ns)
            else:
                self._pending[key] = _Pending(path, size, mtime_ns, now)

    def _drain_events(self) -> None:
        files: dict[str, Path] = {}
        while True:
            try:
                path = Path(self._events.get_nowait())
            except queue.Empty:
                break
            if path.is_dir() and not path.is_symlink():
                self.scan(
                    path
                )  # a folder created or moved in: its files gave no events of their own
                continue
            key = self._key(path)
            if key is not None:
                files[key] = path
        self._consider(files)

    def _ready(self) -> list[tuple[str, _Pending]]:
        """Pending files whose size and mtime held still for ``settle`` seconds, oldest first."""
        now, ready = time.monotonic(), []
        for key, item in list(self._pending.items()):
            try:
                st = item.path.stat()
            except OSError:
                del self._pending[key]  # removed before it settled
                continue
            if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
                self._pending[key] = _Pending(item.path, st.st_size, st.st_mtime_ns, now)
            elif now - item.since >= self.settle:
                ready.append((key, item))
        return sorted(ready, key=lambda pair: (pair[1].mtime_ns, pair[0]))

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

    def process(self, key: str, item: _Pending) -> None:
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

    def _process(self, key: str, item: _Pending, mark: FileMark) -> None:
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
            self._pending[key] = _Pending(item.path, st.st_size, st.st_mtime_ns, time.monotonic())
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

    def _observe(self) -> Any:
        """A started watchdog observer feeding `_events`, or None (polling)."""
        if self.poll is not None:
            return None
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:
            self.poll = 2.0
            self.warn(
                "watchdog is not installed: rescanning the folder every 2 s (pip install watchdog)"
            )
            return None
        events = self._events

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in ("created", "modified", "moved", "closed"):
                    events.put(os.fsdecode(getattr(event, "dest_path", "") or event.src_path))

        observer = Observer()
        try:
            observer.schedule(Handler(), str(self.root), recursive=True)
            observer.start()
        except OSError as err:  # e.g. the inotify watch limit
            self.poll = 2.0
            self.warn(
                f"cannot watch {self.root} for changes ({err}): rescanning it every 2 s instead"
            )
            return None
        return observer
