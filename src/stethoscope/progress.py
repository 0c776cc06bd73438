"""Progress of long loops: a tqdm bar on a terminal, a periodic log line otherwise.

A bar redraws itself with carriage returns, which turns a log file (``2> train.log``, a
batch job, CI) into one unreadable line. When the stream is not a terminal (and not a
notebook, where tqdm draws a widget) a line such as
``train dcase_ae: epoch 12/100, 3.1 s/epoch, loss 8.12`` is written at most every
``$STETHOSCOPE_PROGRESS_SECONDS`` seconds (default 30), plus a last one when the loop ends
if any was written. Call sites use one function for both::

    bar = progress(items, desc="decode", unit="clip", enabled=ctx.progress)
    for item in bar:
        ...
        bar.set_postfix({"loss": f"{loss:.4g}"})
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sized
from typing import Any, Protocol, TextIO

from tqdm.auto import tqdm as auto_tqdm
from tqdm.autonotebook import tqdm as notebook_tqdm
from tqdm.std import tqdm as std_tqdm

from .utils import env_number

DEFAULT_SECONDS = 30.0


class Progress(Protocol):
    """What call sites use: iterate (counts one per item), `update`, `set_postfix`, `close`."""

    def __iter__(self) -> Iterator[Any]: ...

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None) -> Any: ...

    def close(self) -> None: ...


def log_interval() -> float:
    """Seconds between log lines: ``$STETHOSCOPE_PROGRESS_SECONDS`` (default 30)."""
    return env_number("STETHOSCOPE_PROGRESS_SECONDS", DEFAULT_SECONDS, unit=" s")


class LogProgress:
    """Progress as plain lines, at most one per ``interval`` seconds; the rate shown is the
    one since the previous line."""

    def __init__(
        self,
        iterable: Iterable[Any] | None,
        desc: str,
        total: int | None,
        unit: str,
        initial: int,
        interval: float,
        stream: TextIO,
    ) -> None:
        self.iterable, self.desc, self.unit, self.interval, self.stream = (
            iterable,
            desc,
            unit,
            interval,
            stream,
        )
        if total is None and isinstance(iterable, Sized):  # as tqdm counts
            total = len(iterable)
        self.total, self.n = total, initial
        self.postfix: dict[str, Any] = {}
        self._mark = (
            time.monotonic(),
            initial,
        )  # time and count of the previous line (or the start)
        self._written = False

    def __iter__(self) -> Iterator[Any]:
        for item in () if self.iterable is None else self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._mark[0] >= self.interval:
            self._write()

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None) -> None:
        self.postfix = dict(ordered_dict or {})

    def close(self) -> None:
        if self._written and self.n != self._mark[1]:
            self._write()

    def line(self) -> str:
        """e.g. ``train dcase_ae: epoch 12/100, 3.1 s/epoch, loss 8.12``."""
        now, (then, done) = time.monotonic(), self._mark
        parts = [f"{self.unit} {self.n}" + (f"/{self.total}" if self.total is not None else "")]
        if self.n > done and now > then:
            per_unit = (now - then) / (self.n - done)
            parts.append(
                f"{per_unit:.1f} s/{self.unit}"
                if per_unit >= 1
                else f"{1 / per_unit:.1f} {self.unit}/s"
            )
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        return f"{self.desc}: " + ", ".join(parts)

    def _write(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._mark, self._written = (time.monotonic(), self.n), True


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    unit: str = "it",
    total: int | None = None,
    initial: int = 0,
    enabled: bool = True,
    stream: TextIO | None = None,
) -> Progress:
    """A tqdm bar (on a terminal or in a notebook), log lines (anything else), or nothing
    (``enabled=False``); iterate it or call `update`, then `close` it."""
    stream = stream or sys.stderr
    if not enabled:
        return std_tqdm(iterable, total=total, disable=True)
    if stream.isatty() or notebook_tqdm is not std_tqdm:  # a terminal, or a notebook widget
        return auto_tqdm(
            iterable, desc=desc, unit=unit, total=total, initial=initial, leave=False, file=stream
        )
    return LogProgress(iterable, desc, total, unit, initial, log_interval(), stream)


__all__ = ["DEFAULT_SECONDS", "LogProgress", "Progress", "log_interval", "progress"]
