"""Audio loading with soundfile + soxr: every format this libsndfile decodes, each file
checked by the audio policy (`data.policy`) on the samples decoded once, errors naming the file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import NoReturn

import numpy as np
import soundfile as sf
import soxr

from .policy import AudioPolicy, current_policy
from .quality import (
    AUDIO_SUFFIXES,
    UNKNOWN_FRAMES,
    AudioHeader,
    Problem,
    entry_problem,
    header_problems,
    max_frames,
    read_header,
    too_long,
    wav_truncation,
)
from .samples import WaveStats

SAMPLE_RATE = 16_000
BLOCK_FRAMES = 1 << 16  # frames decoded at a time: every channel of one block is in memory at once
__all__ = [
    "AUDIO_SUFFIXES",
    "SAMPLE_RATE",
    "audio_info",
    "decode_audio",
    "decode_checked",
    "load_audio",
    "read_file",
]


def read_file(path: str | Path, policy: AudioPolicy | None = None) -> bytes:
    """A file's bytes, after `quality.entry_problem` made sure it is a regular file: a FIFO,
    a device or a folder is refused by name and never opened."""
    policy = policy or current_policy()
    problem = entry_problem(path)
    if problem:
        policy.refuse(path, problem)
    try:
        return Path(path).read_bytes()
    except OSError as err:
        policy.refuse(path, Problem(f"cannot read file ({err.strerror or err})", unreadable=True))


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    channel: int | None = 0,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Read one file as float32 mono at ``sample_rate``.

    ``channel`` picks one channel of a multichannel file (MIMII raw has 8); ``None`` averages
    them. Unusable files (missing, not a regular file, empty, truncated, undecodable, shorter
    than ``min_seconds``, NaN, all zeros) raise `AudioError`; suspicious ones go through the
    active audio policy (by default a warning).
    """
    return decode_audio(read_file(path), path, sample_rate, channel, min_seconds)


def decode_audio(
    raw: bytes,
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    channel: int | None = 0,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """`load_audio` on a file's bytes already in memory (``path`` names it in messages)."""
    return decode_checked(raw, path, sample_rate, channel, min_seconds)[0]


def decode_checked(
    raw: bytes,
    path: str | Path,
    sample_rate: int | None = SAMPLE_RATE,
    channel: int | None = 0,
    min_seconds: float = 0.0,
    policy: AudioPolicy | None = None,
) -> tuple[np.ndarray, WaveStats]:
    """Decode once, check the header and the samples (at the file's own rate, before
    resampling), apply the policy, resample (``sample_rate=None``: keep the file's rate):
    (waveform, its `WaveStats`). A file whose header promises more than the policy's
    ``max_seconds`` is refused before any sample is decoded; one that decodes to more than its
    header said is cut off at that limit and refused."""
    policy = policy or current_policy()
    wave, header = _decode(raw, path, channel, policy)
    stats = WaveStats.of(wave, header.sample_rate)
    sample_problems = stats.problems(min_seconds)
    unreadable = any(p.unreadable for p in sample_problems)
    policy.require(
        path, sample_problems if unreadable else header_problems(header) + sample_problems
    )
    if sample_rate is not None and header.sample_rate != sample_rate:
        wave = soxr.resample(wave, header.sample_rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32), stats


def _decode(
    raw: bytes, path: str | Path, channel: int | None, policy: AudioPolicy
) -> tuple[np.ndarray, AudioHeader]:
    """The samples of ``channel`` (None: the mean) at the file's own rate, and its header;
    refused through ``policy`` where the bytes are empty, truncated, undecodable, lack the
    channel or hold more audio than ``max_seconds``."""

    def refuse(reason: str) -> NoReturn:
        policy.refuse(path, Problem(reason, unreadable=True))

    if not raw:
        refuse("empty file (0 bytes)")
    truncated = wav_truncation(raw, len(raw))
    if truncated:
        refuse(truncated)
    try:
        with sf.SoundFile(io.BytesIO(raw)) as handle:
            header = AudioHeader(
                Path(path),
                handle.format,
                handle.subtype,
                handle.samplerate,
                handle.channels,
                handle.frames,
            )
            if channel is not None and not 0 <= channel < header.channels:
                refuse(f"channel {channel} requested but the file has {header.channels} channel(s)")
            long = too_long(header, policy.max_seconds)
            if long:
                refuse(long.reason)  # from the header: nothing decoded
            wave = _read_bounded(
                handle, channel, max_frames(policy.max_seconds, header.sample_rate, header.channels)
            )
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        reason = str(err).rsplit(": ", 1)[
            -1
        ]  # drop libsndfile's "Error opening <BytesIO ...>" prefix
        refuse(f"not a readable audio file ({reason})")
    if wave is None:
        said = (
            "" if header.frames >= UNKNOWN_FRAMES else f" (its header says {header.frames} frames)"
        )
        refuse(
            f"decodes to more than the --max-seconds {policy.max_seconds:g} limit "
            f"allows{said}; decoding stopped there"
        )
    return wave, header


def _read_bounded(handle: sf.SoundFile, channel: int | None, limit: int) -> np.ndarray | None:
    """The chosen channel (``None``: the mean of all) read block by block, so that at most one
    block of every channel is in memory; None as soon as more than ``limit`` frames arrive (a
    header may understate the length, e.g. a FLAC whose STREAMINFO gives no sample count)."""
    parts: list[np.ndarray] = []
    total = 0
    while True:
        block = handle.read(
            frames=min(BLOCK_FRAMES, limit + 1 - total), dtype="float32", always_2d=True
        )
        if not len(block):
            break
        total += len(block)
        if total > limit:
            return None
        parts.append(block.mean(axis=1) if channel is None else block[:, channel].copy())
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def audio_info(path: str | Path) -> tuple[int, int, float]:
    """(sample_rate, channels, seconds) of a file from its header; unusable files raise
    `AudioError` naming them (a FIFO or folder is never opened)."""
    header, problems = read_header(path)
    policy = current_policy()
    for problem in problems:
        if problem.unreadable or header is None:
            policy.refuse(path, problem)
    assert header is not None, "read_header gives no header only with an unreadable finding"
    long = too_long(header, policy.max_seconds)
    if long:
        policy.refuse(path, long)
    assert header is not None, "read_header gives no header only with an unreadable finding"
    return header.sample_rate, header.channels, header.seconds
