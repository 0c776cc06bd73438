"""Audio loading with soundfile + soxr and errors that say which file is wrong and why."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError

SAMPLE_RATE = 16_000
AUDIO_SUFFIXES = (".wav", ".flac")


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, channel: int | None = 0) -> np.ndarray:
    """Read one file as float32 mono at ``sample_rate``.

    ``channel`` picks one channel of a multichannel file (MIMII raw has 8); ``None`` averages
    them. Raises `AudioError` for missing, empty, truncated, unreadable, silent or non-finite audio.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise AudioError(path, "file not found") from err
    except OSError as err:
        raise AudioError(path, f"cannot read file ({err.strerror or err})") from err
    return decode_audio(raw, path, sample_rate, channel)


def decode_audio(raw: bytes, path: str | Path, sample_rate: int = SAMPLE_RATE, channel: int | None = 0) -> np.ndarray:
    """`load_audio` on a file's bytes already in memory (``path`` only names it in errors)."""
    if not raw:
        raise AudioError(path, "empty file (0 bytes)")
    truncated = wav_truncation(raw)
    if truncated:
        raise AudioError(path, truncated)
    try:
        data, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        reason = str(err).rsplit(">: ", 1)[-1]  # drop libsndfile's "Error opening <BytesIO ...>" prefix
        raise AudioError(path, f"not a readable WAV/FLAC file ({reason})") from err
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (0 samples)")
    if channel is None:
        wave = data.mean(axis=1)
    elif not 0 <= channel < data.shape[1]:
        raise AudioError(path, f"channel {channel} requested but the file has {data.shape[1]} channel(s)")
    else:
        wave = data[:, channel]
    if not np.isfinite(wave).all():
        raise AudioError(path, "audio contains NaN or infinite samples")
    if not np.any(wave):
        raise AudioError(path, "audio is all zeros (silent)")
    if sr != sample_rate:
        wave = soxr.resample(wave, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


def wav_truncation(raw: bytes) -> str | None:
    """Why a RIFF/WAV file is cut short, or None. libsndfile silently returns the frames that
    are present, so a half-copied file would otherwise pass as a shorter clip."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None  # not RIFF/WAV (FLAC, RF64, garbage): soundfile judges it
    offset = 12
    while offset + 8 <= len(raw):
        chunk, size = raw[offset:offset + 4], int.from_bytes(raw[offset + 4:offset + 8], "little")
        available = len(raw) - offset - 8
        if chunk == b"data":
            if size not in (0, 0xFFFFFFFF) and available < size:  # 0 / -1: size unknown (streamed)
                return f"truncated WAV: data chunk declares {size} bytes but only {available} are present"
            return None
        offset += 8 + size + (size & 1)
    return "truncated WAV: no complete data chunk" if offset != len(raw) else None


def audio_info(path: str | Path) -> tuple[int, int, float]:
    """(sample_rate, channels, seconds) of a file, with the same errors as `load_audio`."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise AudioError(path, f"not a readable WAV/FLAC file ({err})") from err
    return info.samplerate, info.channels, info.frames / max(info.samplerate, 1)
