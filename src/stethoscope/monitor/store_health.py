"""Writes to the event store under faults: a failed write is retried with backoff, and
`StoreHealth` says the store is *degraded* from a failed write until one succeeds (``/health``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .store import StoreError

WRITE_TRIES = 3  # a score's write is tried this often before its client hears 503
WRITE_BACKOFF_S = 0.1  # ... waiting this long, doubled after each failure, between tries


class StoreHealth:
    """Whether writes to the event store work: *degraded* from a failed write until the next
    one that succeeds (what ``/health`` reports; a watcher retries meanwhile)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failing_since: float | None = None
        self.failures = 0
        self.last_error = ""

    def failed(self, err: StoreError) -> None:
        with self._lock:
            self.failing_since = self.failing_since or time.time()
            self.failures += 1
            self.last_error = str(err)

    def ok(self) -> None:
        with self._lock:
            self.failing_since, self.failures, self.last_error = None, 0, ""

    @property
    def degraded(self) -> bool:
        return self.failing_since is not None


def retry_write(call: Callable[[], Any], health: StoreHealth, tries: int = WRITE_TRIES) -> Any:
    """Run one store write, tried up to ``tries`` times while it raises `StoreError` (waiting
    `WRITE_BACKOFF_S`, doubled each time); ``health`` follows the outcome."""
    wait = WRITE_BACKOFF_S
    for attempt in range(1, tries + 1):
        try:
            result = call()
        except StoreError as err:
            health.failed(err)
            if attempt == tries:
                raise
            time.sleep(wait)
            wait *= 2
        else:
            health.ok()
            return result
