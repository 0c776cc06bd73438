"""How often each file is opened, for the one-read-per-clip tests: Python's own opens (the
``open`` audit event: built-in ``open``, ``io``, ``pathlib``, ``os.open``) and libsndfile's
(``soundfile.SoundFile`` given a path, which ``soundfile.info`` and ``read`` use too)."""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import soundfile as sf

_counting: list[OpenCount] = []
_lock = threading.Lock()
_hooked = False


class OpenCount(Counter):
    """Opens per file (real path) while counting."""

    def of(self, path: str | Path) -> int:
        return self[os.path.realpath(path)]

    def note(self, path: Any) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            with _lock:
                self[os.path.realpath(os.fsdecode(path))] += 1


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _counting and args:
        for count in list(_counting):
            count.note(args[0])


@contextmanager
def counting_opens() -> Iterator[OpenCount]:
    """Count the opens of every file in the block (every thread of this process)."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)  # hooks cannot be removed: this one idles outside the block
        _hooked = True
    count = OpenCount()
    original = sf.SoundFile.__init__

    def init(self: sf.SoundFile, file: Any, *args: Any, **kwargs: Any) -> None:
        count.note(file)  # libsndfile opens a path itself, unseen by Python's audit events
        original(self, file, *args, **kwargs)

    sf.SoundFile.__init__ = init  # type: ignore[method-assign]
    _counting.append(count)
    try:
        yield count
    finally:
        _counting.remove(count)
        sf.SoundFile.__init__ = original  # type: ignore[method-assign]


def counting_filesystem() -> Any:
    """An fsspec local filesystem whose ``opens`` (an `OpenCount`) counts the files it opens."""
    from fsspec.implementations.local import LocalFileSystem

    class CountingFileSystem(LocalFileSystem):
        cachable = False

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.opens = OpenCount()

        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            self.opens.note(self._strip_protocol(path))
            return super()._open(path, mode, **kwargs)

    return CountingFileSystem()
