"""The one audio policy of every verb: which files are audio, and what a bad one does.

* Audio files are the visible entries whose suffix is an audio format (`quality.KNOWN_SUFFIXES`);
  hidden names (``.x``, macOS ``._x.flac``) and hidden folders are ignored everywhere.
* An audio-named entry that is not a regular file (folder, FIFO, device, broken or looping
  link) is refused by name and never opened.
* Findings (`quality.Problem`) are *unreadable* or *suspicious*. ``on_bad_audio`` says what
  they do: ``None`` (the default) errors on unreadable files and warns on suspicious ones;
  ``"error"`` errors on both; ``"skip"`` leaves both out; ``"warn"`` keeps suspicious files
  with a warning and leaves unreadable ones out with a warning (they cannot be used).

The policy in force is the one made `active` (the CLI does this per run, from
``--on-bad-audio``); library calls outside any get the default, whose warnings are Python
`AudioWarning` warnings. It records every finding once per file and reason, so a file
decoded once per fold warns once, and ends a run with one line of counts and ``skipped.csv``.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..errors import AudioError, AudioSkipped, ConfigError
from .clip import Clip
from .quality import (
    DEFAULT_MAX_SECONDS,
    AudioHeader,
    Problem,
    duration_problem,
    entry_problem,
    is_audio_name,
    is_hidden,
    read_header,
    too_long,
    too_short,
)

ON_BAD_AUDIO = ("error", "skip", "warn")
# ends an error that the flag could turn into a skip
SKIP_HINT = " (--on-bad-audio skip leaves such files out)"


class AudioWarning(UserWarning):
    """A suspicious audio file that was kept (library use outside an `AudioPolicy.active` block)."""


def _python_warning(message: str) -> None:
    warnings.warn(message, AudioWarning, stacklevel=4)


def print_warning(message: str) -> None:
    """How the CLI says a finding: one ``warning:`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Finding:
    """What the policy did about one file: ``action`` is "skipped" or "warned"."""

    path: str
    reason: str
    action: str


class AudioPolicy:
    """What bad audio does in this run, and what it did (see the module docstring)."""

    def __init__(
        self,
        on_bad_audio: str | None = None,
        say: Callable[[str], None] = _python_warning,
        max_seconds: float = DEFAULT_MAX_SECONDS,
    ) -> None:
        if on_bad_audio not in (None, *ON_BAD_AUDIO):
            raise ConfigError(
                f"--on-bad-audio must be one of {', '.join(ON_BAD_AUDIO)}, got {on_bad_audio!r}"
            )
        if not 0 < max_seconds < float("inf"):
            raise ConfigError(
                f"--max-seconds must be a positive number of seconds, got {max_seconds}"
            )
        self.on_bad_audio = on_bad_audio
        self.max_seconds = float(
            max_seconds
        )  # longest audio decoded: a runtime limit, never a hyperparameter
        self._say = say
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()
        self._skipped: set[str] = set()
        self.findings: list[Finding] = []

    def action(self, unreadable: bool) -> str:
        """ "error", "skip" or "warn" for a finding of this kind."""
        if self.on_bad_audio is None:
            return "error" if unreadable else "warn"
        if self.on_bad_audio == "warn" and unreadable:
            return "skip"  # an unreadable file cannot be kept: left out, and said aloud
        return self.on_bad_audio

    def judge(self, path: str | Path, problems: Sequence[Problem]) -> bool:
        """Apply the policy to a file's findings: True keeps it (perhaps with a warning), False
        leaves it out; under "error" an `AudioError` names the file and every finding. Each
        finding is said once per file, however often the file is decoded."""
        if not problems:
            return not self.is_skipped(path)
        unreadable = any(p.unreadable for p in problems)
        action = self.action(unreadable)
        if action == "error":
            hint = "" if self.on_bad_audio == "error" else SKIP_HINT
            raise AudioError(path, "; ".join(p.reason for p in problems) + hint)
        done = "skipped" if action == "skip" else "warned"
        with self._lock:
            new = [p.reason for p in problems if (str(path), p.reason) not in self._seen]
            self._seen.update((str(path), reason) for reason in new)
            self.findings += [Finding(str(path), reason, done) for reason in new]
            if new:
                self._say(f"{path}: {'; '.join(new)}{' (skipped)' if action == 'skip' else ''}")
            if action == "skip":
                self._skipped.add(str(path))
        return action == "warn" and not self.is_skipped(path)

    def require(self, path: str | Path, problems: Sequence[Problem]) -> None:
        """`judge`, raising `AudioSkipped` where the file is left out (for code that cannot drop
        a file itself); an unreadable finding therefore never returns."""
        if not self.judge(path, problems):
            raise AudioSkipped(path, "left out by the audio policy (--on-bad-audio)")

    def refuse(self, path: str | Path, problem: Problem) -> NoReturn:
        """Apply the policy to one unreadable finding: an `AudioError` naming the file, or where
        the policy leaves such files out, `AudioSkipped` after recording it."""
        self.judge(path, [problem])
        raise AudioSkipped(path, f"{problem.reason} (skipped)")

    def leave_out(self, path: str | Path, reason: str) -> None:
        """Leave out a file that decoded but cannot be used (e.g. its score is not finite):
        recorded and said as skipped, whatever the policy, since a batch loses only this file;
        under ``--on-bad-audio error`` an `AudioError` naming it."""
        if self.on_bad_audio == "error":
            raise AudioError(path, reason)
        with self._lock:
            if (str(path), reason) not in self._seen:
                self._seen.add((str(path), reason))
                self.findings.append(Finding(str(path), reason, "skipped"))
                self._say(f"{path}: {reason} (skipped)")
            self._skipped.add(str(path))

    def is_skipped(self, path: str | Path) -> bool:
        with self._lock:
            return str(path) in self._skipped

    def summary(self, skipped_csv: Path | None = None) -> str | None:
        """One line of counts, or None when nothing was skipped or warned about."""
        with self._lock:
            skipped = set(self._skipped)
        warned = {f.path for f in self.findings} - skipped
        if not skipped and not warned:
            return None
        where = f"; list in {skipped_csv}" if skipped and skipped_csv else ""
        return (
            f"audio checks: {len(skipped)} file(s) skipped, {len(warned)} kept with "
            f"warnings{where} (--on-bad-audio {self.on_bad_audio or 'default'})"
        )

    def write_skipped(self, path: Path) -> Path | None:
        """``skipped.csv`` (file, reason) of the files left out; None (and no file) when none
        were."""
        reasons: dict[str, list[str]] = {}
        for f in self.findings:
            if f.path in self._skipped:
                reasons.setdefault(f.path, []).append(f.reason)
        if not reasons:
            return None
        from ..fsutil import atomic_write_text

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["file", "reason"])
        writer.writerows([file, "; ".join(why)] for file, why in reasons.items())
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, buf.getvalue())
        return path

    @contextmanager
    def active(self) -> Iterator[AudioPolicy]:
        """Make this the policy of every scan and decode in the block (and threads it starts
        through `iter_decoded`)."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


def not_finite(score: float) -> str:
    """Why a file whose score is NaN or infinite is left out (`AudioPolicy.leave_out`): such a
    score is never stored (every scoring path: score, evaluate, Ray, serve, watch)."""
    return (
        f"the model's score is {score} (not finite): the audio cannot be scored "
        "(samples far beyond full scale?)"
    )


_ACTIVE: ContextVar[AudioPolicy | None] = ContextVar("stethoscope_audio_policy", default=None)


def current_policy() -> AudioPolicy:
    """The active policy, or a fresh default one (errors on unreadable, Python warnings on
    suspicious)."""
    return _ACTIVE.get() or AudioPolicy()


# -- which files are audio ----------------------------------------------------------------------
def list_audio(root: str | Path) -> tuple[list[Path], list[tuple[Path, Problem]]]:
    """(regular audio files, refused audio-named entries with why) below ``root``, sorted.

    Hidden files and folders are passed over; symbolic links to folders are not followed;
    an audio-named folder, FIFO, device or broken link is refused without being opened.
    """
    files: list[Path] = []
    refused: list[tuple[Path, Problem]] = []
    for folder, dirs, names in os.walk(root):
        base = Path(folder)
        audio_dirs = [d for d in dirs if is_audio_name(d)]
        dirs[:] = sorted(d for d in dirs if not is_hidden(d) and d not in audio_dirs)
        for name in [*names, *audio_dirs]:
            if not is_audio_name(name):
                continue
            path = base / name
            problem = entry_problem(path)
            if problem is None:
                files.append(path)
            else:
                refused.append((path, problem))
    return sorted(files), sorted(refused, key=lambda item: str(item[0]))


def audio_paths(paths: Sequence[str | Path], policy: AudioPolicy | None = None) -> list[Path]:
    """The audio files named by ``paths`` (files, or folders searched as `list_audio` does);
    refused entries and named files that are no audio go through the policy."""
    from ..errors import LayoutError

    policy = policy or current_policy()
    out: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not is_audio_name(path.name):
            files, refused = list_audio(path)
            for bad, refusal in refused:
                policy.judge(bad, [refusal])
            if not files and not refused:
                raise LayoutError(
                    f"{path}: folder holds no audio files (.wav, .flac, .ogg, .mp3, ...)"
                )
            out += files
            continue
        problem = entry_problem(path)
        if problem is None and not is_audio_name(path.name):
            problem = Problem(
                "not an audio file name (expected .wav, .flac, .ogg, .mp3, ...)", unreadable=True
            )
        if problem is None or policy.judge(path, [problem]):
            out.append(path)
    return out


# -- header checks of a set of clips ------------------------------------------------------------
def screen(
    clips: Sequence[Clip],
    min_seconds: float = 0.0,
    policy: AudioPolicy | None = None,
    by: Callable[[Clip], str] = lambda c: c.machine,
) -> tuple[list[Clip], dict[Path, AudioHeader]]:
    """Header-level checks of every clip before any is decoded: readable, suffix vs content,
    sample rate, long enough for ``min_seconds``, not longer than the policy's ``max_seconds``
    (refused unread), duration within `quality.DURATION_RANGE` of its group's median (groups:
    ``by``, the machine type). Returns the kept clips and
    the headers read (one per file)."""
    policy = policy or current_policy()
    headers: dict[Path, AudioHeader] = {}
    problems: dict[Path, list[Problem]] = {}
    for path in dict.fromkeys(Path(c.path) for c in clips):
        header, found = read_header(path)
        if header is not None:
            headers[path] = header
        short = too_short(header.seconds, min_seconds) if header is not None and not found else None
        long = too_long(header, policy.max_seconds) if header is not None else None
        problems[path] = found + [p for p in (short, long) if p]
    groups: dict[str, list[Path]] = {}
    for c in clips:
        groups.setdefault(by(c), []).append(Path(c.path))
    for paths in groups.values():
        fine = list(
            dict.fromkeys(
                p for p in paths if p in headers and not any(x.unreadable for x in problems[p])
            )
        )
        if len(fine) < 3:
            continue  # a median of one or two clips says nothing
        median = statistics.median(headers[p].seconds for p in fine)
        for p in fine:
            odd = duration_problem(headers[p].seconds, median)
            if odd and odd not in problems[p]:
                problems[p].append(odd)
    kept = {p for p, found in problems.items() if policy.judge(p, found)}
    return [c for c in clips if Path(c.path) in kept], headers
