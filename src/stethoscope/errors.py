"""Errors that name the offending file and the problem, so users can fix their input."""

from __future__ import annotations


class StethoscopeError(Exception):
    """Base class of every error this package raises on purpose."""


class AudioError(StethoscopeError):
    """An audio file is unreadable, empty, silent, non-finite or otherwise unusable."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class AudioSkipped(AudioError):
    """A file the audio policy left out (``--on-bad-audio skip|warn``); callers that can drop
    one file catch it, the rest report it like any `AudioError`."""


class LayoutError(StethoscopeError):
    """A data folder does not match any known layout, or has no usable clips."""


class CheckpointError(StethoscopeError):
    """A model directory or pretrained weight file is missing or does not match."""


class ConfigError(StethoscopeError):
    """A configuration key or value is unknown or invalid."""


class DownloadError(StethoscopeError):
    """A data set archive could not be fetched, verified or unpacked (the message names it)."""


class ChecksumError(DownloadError):
    """A downloaded archive does not match its published checksum (the file is deleted)."""
