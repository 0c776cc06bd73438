"""What can be wrong with one audio file, found without opening what is not a regular file,
from the header alone (soundfile.info) or from the samples decoded once (those checks are
`data.samples.WaveStats`').

Each finding is a `Problem`: ``unreadable`` ones make a file unusable (not a regular file,
no decodable audio, truncated, too short, NaN, all zeros); the others are *suspicious*:
the file decodes, but a practitioner wants a word (wrong extension for its content, a very
low sample rate, DC offset, clipping, near silence, a constant signal, an odd duration).
`data.policy` decides what each kind of finding does (error, skip or warn).
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

# file-name suffix -> the libsndfile formats its content may have ("" = libsndfile cannot decode it)
_SUFFIX_FORMATS: dict[str, tuple[str, ...]] = {
    ".wav": ("WAV", "WAVEX", "RF64", "W64"),
    ".flac": ("FLAC",),
    ".ogg": ("OGG",),
    ".oga": ("OGG",),
    ".opus": ("OGG",),
    ".mp3": ("MP3",),
    ".aif": ("AIFF",),
    ".aiff": ("AIFF",),
    ".aifc": ("AIFF",),
    ".m4a": (),
    ".aac": (),
    ".wma": (),
}
_DECODABLE = set(sf.available_formats())
KNOWN_SUFFIXES = tuple(_SUFFIX_FORMATS)
AUDIO_SUFFIXES = tuple(s for s, formats in _SUFFIX_FORMATS.items() if _DECODABLE & set(formats))

MIN_SAMPLE_RATE = 8_000  # Hz: below this, half of the 16 kHz model input band is empty
DURATION_RANGE = (
    0.5,
    3.0,
)  # a clip outside these multiples of its set's median duration is flagged
DEFAULT_MAX_SECONDS = 600.0  # longest audio decoded (--max-seconds): bounds a file's decoded size
UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's frame count of a stream whose header gives no length
SAMPLES_PER_SECOND_CAP = (
    384_000  # frames x channels per allowed second (192 kHz stereo, 48 kHz x 8 channels)
)


@dataclass(frozen=True)
class Problem:
    """One finding about a file; ``unreadable`` ones make it unusable."""

    reason: str
    unreadable: bool = False


def is_hidden(name: str) -> bool:
    """Hidden names (``.DS_Store``, macOS ``._x.flac`` resource forks, ``.git``) are never data."""
    return name.startswith(".")


def is_audio_name(name: str) -> bool:
    """A visible name with an audio suffix (decodable by this libsndfile or not)."""
    return not is_hidden(name) and Path(name).suffix.lower() in _SUFFIX_FORMATS


def entry_problem(path: str | Path) -> Problem | None:
    """Why ``path`` cannot be read as a file, from ``lstat``/``stat`` alone: nothing is opened,
    so a FIFO never blocks and a device is never read."""
    path = Path(path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return Problem("file not found", unreadable=True)
    except OSError as err:
        return Problem(f"cannot read file ({err.strerror or err})", unreadable=True)
    if stat.S_ISLNK(st.st_mode):
        try:
            st = path.stat()
        except FileNotFoundError:
            return Problem(
                f"a broken symbolic link (its target {os.readlink(path)} does not exist)",
                unreadable=True,
            )
        except OSError as err:
            return Problem(
                f"a symbolic link that cannot be followed ({err.strerror or err})", unreadable=True
            )
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    for test, kind in kinds:
        if test(st.st_mode):
            return Problem(f"{kind}, not an audio file (not opened)", unreadable=True)
    if not stat.S_ISREG(st.st_mode):
        return Problem("not a regular file (not opened)", unreadable=True)
    if st.st_size == 0:
        return Problem("empty file (0 bytes)", unreadable=True)
    suffix = path.suffix.lower()
    if suffix in _SUFFIX_FORMATS and suffix not in AUDIO_SUFFIXES:
        names = "/".join(_SUFFIX_FORMATS[suffix]) or suffix[1:].upper()
        return Problem(
            f"{names} files cannot be decoded by this libsndfile "
            f"({sf.__libsndfile_version__}); "
            "convert it to WAV or FLAC",
            unreadable=True,
        )
    return None


def wav_truncation(head: bytes, size: int) -> str | None:
    """Why a RIFF/WAV file of ``size`` bytes starting with ``head`` is cut short, or None.
    libsndfile silently returns the frames present, so a half-copied file would pass as a
    shorter clip; the chunk headers in ``head`` and the file size tell without reading it all."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None  # not RIFF/WAV (FLAC, RF64, garbage): soundfile judges it
    offset = 12
    while offset + 8 <= min(len(head), size):
        chunk, length = (
            head[offset : offset + 4],
            int.from_bytes(head[offset + 4 : offset + 8], "little"),
        )
        available = size - offset - 8
        if chunk == b"data":
            if (
                length not in (0, 0xFFFFFFFF) and available < length
            ):  # 0 / -1: size unknown (streamed)
                return (
                    f"truncated WAV: data chunk declares {length} bytes but only {available} "
                    "are present"
                )
            return None
        offset += 8 + length + (length & 1)
    if offset < size and offset + 8 > len(head):
        return None  # chunks beyond the bytes looked at: soundfile judges the rest
    return "truncated WAV: no complete data chunk" if offset != size else None


@dataclass(frozen=True)
class AudioHeader:
    """What ``soundfile.info`` says about a file."""

    path: Path
    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / max(self.sample_rate, 1)


def read_header(path: str | Path) -> tuple[AudioHeader | None, list[Problem]]:
    """The header of a regular file and what it shows: undecodable, truncated, empty,
    content that does not match the suffix, a sample rate under `MIN_SAMPLE_RATE`."""
    path = Path(path)
    problem = entry_problem(path)
    if problem:
        return None, [problem]
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
        truncated = wav_truncation(head, path.stat().st_size)
        info = sf.info(str(path))
    except OSError as err:
        return None, [Problem(f"cannot read file ({err.strerror or err})", unreadable=True)]
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        return None, [
            Problem(f"not a readable audio file ({_soundfile_reason(err)})", unreadable=True)
        ]
    return _judged_header(path, info, truncated)


def header_of(raw: bytes, path: str | Path) -> tuple[AudioHeader | None, list[Problem]]:
    """`read_header` of a file's bytes already in memory (``path`` names it): what a scoring
    pass that has read the file once checks, without opening it again."""
    path = Path(path)
    if not raw:
        return None, [Problem("empty file (0 bytes)", unreadable=True)]
    try:
        info = sf.info(io.BytesIO(raw))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        reason = _soundfile_reason(err)
        return None, [Problem(f"not a readable audio file ({reason})", unreadable=True)]
    return _judged_header(path, info, wav_truncation(raw, len(raw)))


def _judged_header(
    path: Path, info: Any, truncated: str | None
) -> tuple[AudioHeader | None, list[Problem]]:
    """The header ``soundfile.info`` gave (None when ``truncated`` says why) and its findings."""
    if truncated:
        return None, [Problem(truncated, unreadable=True)]
    header = AudioHeader(
        path, info.format, info.subtype, info.samplerate, info.channels, info.frames
    )
    if header.frames == 0:
        return header, [Problem("empty audio (0 samples)", unreadable=True)]
    return header, header_problems(header)


def header_problems(header: AudioHeader) -> list[Problem]:
    """Suspicious facts of a readable header: content vs. suffix, sample rate."""
    out = []
    expected = _SUFFIX_FORMATS.get(header.path.suffix.lower(), ())
    if expected and header.format not in expected:
        out.append(
            Problem(
                f"the content is {header.format} ({header.subtype}), not {expected[0]} "
                "as its name says"
            )
        )
    if header.sample_rate < MIN_SAMPLE_RATE:
        out.append(
            Problem(
                f"sample rate {header.sample_rate} Hz is under {MIN_SAMPLE_RATE} Hz "
                f"(nothing above {header.sample_rate // 2} Hz was recorded)"
            )
        )
    return out


def too_short(seconds: float, min_seconds: float) -> Problem | None:
    """An unreadable finding when a clip is shorter than the model's shortest input."""
    if seconds >= min_seconds:
        return None
    return Problem(
        f"too short: {seconds:.4g} s of audio, at least "
        f"{min_seconds:.3g} s needed for the model's input",
        unreadable=True,
    )


def max_frames(max_seconds: float, sample_rate: int, channels: int) -> int:
    """The most frames of a file at ``sample_rate`` with ``channels`` that may be decoded:
    ``max_seconds`` of audio, and no more than ``max_seconds`` x `SAMPLES_PER_SECOND_CAP`
    samples over all channels (a header claiming a huge rate or channel count gains nothing)."""
    return int(
        min(
            max_seconds * max(sample_rate, 1),
            max_seconds * SAMPLES_PER_SECOND_CAP / max(channels, 1),
        )
    )


def too_long(header: AudioHeader, max_seconds: float) -> Problem | None:
    """An unreadable finding, from the header alone, when decoding the file would exceed the
    ``--max-seconds`` limit (its frames x channels are over what that limit allows). A header
    that does not know its length (libsndfile's `UNKNOWN_FRAMES`: a FLAC written as a stream) is
    no finding: decoding stops at the limit instead (`data.audio`)."""
    if header.frames >= UNKNOWN_FRAMES or header.frames <= max_frames(
        max_seconds, header.sample_rate, header.channels
    ):
        return None
    return Problem(
        f"{header.seconds:.6g} s of audio ({header.frames} frames x {header.channels} "
        f"channel(s) at {header.sample_rate} Hz) is over the --max-seconds "
        f"{max_seconds:g} limit; not decoded",
        unreadable=True,
    )


def duration_problem(seconds: float, median: float) -> Problem | None:
    """A suspicious finding when a clip's duration is far from its set's median."""
    low, high = DURATION_RANGE
    if median <= 0 or low * median <= seconds <= high * median:
        return None
    return Problem(
        f"duration {seconds:.4g} s is far from the set's median {median:.4g} s "
        f"(outside {low:g}x-{high:g}x)"
    )


def _soundfile_reason(err: Exception) -> str:
    return str(err).rsplit(": ", 1)[-1]  # drop libsndfile's "Error opening <file>" prefix
