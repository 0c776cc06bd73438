"""Finding the recordings of a watched folder (`watch.FolderWatcher`'s first half): which names
are watched, a full or partial rescan, watchdog's change events, and which pending files have
settled (size and mtime unchanged for ``settle`` seconds) and are ready to score."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.quality import is_audio_name, is_hidden
from .service import Monitor

TEMP_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".swp")


def is_watched_name(name: str) -> bool:
    """A visible, non-temporary name with an audio suffix."""
    lowered = name.lower()
    return is_audio_name(name) and not lowered.endswith(TEMP_SUFFIXES) and not lowered.endswith("~")


def text_key(rel: str) -> str:
    """A relative path as storable text: names that are not UTF-8 keep their bytes as escapes."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace")


@dataclass
class Pending:
    """A watched file not done yet: its path, size and mtime as last seen."""

    path: Path
    size: int
    mtime_ns: int
    since: float  # monotonic time since which size and mtime are unchanged


class FolderScanner:
    """The finding half of `watch.FolderWatcher` (a dataclass that sets these attributes):
    keeps the files pending until they settle, and those known done."""

    monitor: Monitor
    root: Path
    recursive: bool
    settle: float
    poll: float | None
    warn: Callable[[str], None]
    _pending: dict[str, Pending]
    _done: dict[str, tuple[int, int]]  # key -> the (size, mtime_ns) known done
    _events: queue.SimpleQueue[str]
    _gone: bool

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
                self._pending[key] = Pending(path, size, mtime_ns, now)

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

    def _ready(self) -> list[tuple[str, Pending]]:
        """Pending files whose size and mtime held still for ``settle`` seconds, oldest first."""
        now, ready = time.monotonic(), []
        for key, item in list(self._pending.items()):
            try:
                st = item.path.stat()
            except OSError:
                del self._pending[key]  # removed before it settled
                continue
            if (st.st_size, st.st_mtime_ns) != (item.size, item.mtime_ns):
                self._pending[key] = Pending(item.path, st.st_size, st.st_mtime_ns, now)
            elif now - item.since >= self.settle:
                ready.append((key, item))
        return sorted(ready, key=lambda pair: (pair[1].mtime_ns, pair[0]))

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
