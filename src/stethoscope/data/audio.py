"""Audio loading with soundfile + soxr and errors that say which file is wrong and why."""
from __future__ import annotations

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
    them. Raises `AudioError` for unreadable, empty, silent or non-finite audio.
    """
    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError as err:
        raise AudioError(path, "file not found") from err
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        raise AudioError(path, f"not a readable WAV/FLAC file ({err})") from err
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


def audio_info(path: str | Path) -> tuple[int, int, float]:
    """(sample_rate, channels, seconds) of a file, with the same errors as `load_audio`."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise AudioError(path, f"not a readable WAV/FLAC file ({err})") from err
    return info.samplerate, info.channels, info.frames / max(info.samplerate, 1)
