"""Log-mel extraction for many clips: threaded decoding, batched torch maths, on-disk cache."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.audio import audio_info, decode_audio
from ..data.clip import Clip
from ..errors import AudioError
from .logmel import LogMel, LogMelParams


def default_cache_dir() -> Path:
    """``$STETHOSCOPE_CACHE`` or ``~/.cache/stethoscope``."""
    return Path(os.environ.get("STETHOSCOPE_CACHE", Path.home() / ".cache" / "stethoscope"))


class FeatureCache:
    """Arrays stored as .npy under a key made of the file's content hash and the parameters."""

    def __init__(self, root: str | Path, namespace: str, params: dict) -> None:
        tag = hashlib.blake2b(json.dumps(params, sort_keys=True).encode(), digest_size=8).hexdigest()
        self.dir = Path(root) / namespace / tag
        self.params = params

    def path(self, content_key: str) -> Path:
        return self.dir / content_key[:2] / f"{content_key}.npy"

    def get(self, content_key: str) -> np.ndarray | None:
        p = self.path(content_key)
        if not p.exists():
            return None
        try:
            return np.load(p)
        except (ValueError, OSError):  # a corrupt entry is recomputed, never trusted
            return None

    def put(self, content_key: str, array: np.ndarray) -> None:
        p = self.path(content_key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, p)


def _read_bytes(clip: Clip, hash_content: bool = True) -> tuple[str, bytes]:
    """(content key, raw bytes) of a clip's file: the key hashes the bytes (sha256, the fastest
    hashlib digest on CPUs with SHA extensions) and the channel; "" when not hashed."""
    try:
        raw = Path(clip.path).read_bytes()
    except OSError as err:
        raise AudioError(clip.path, f"cannot read file ({err.strerror or err})") from err
    if not hash_content:
        return "", raw
    return hashlib.sha256(raw).hexdigest()[:32] + f"-c{clip.channel}", raw


def read_clip(clip: Clip, sample_rate: int) -> tuple[str, np.ndarray]:
    """(content hash, waveform) of a clip, reading the file once."""
    key, raw = _read_bytes(clip)
    return key, decode_audio(raw, clip.path, sample_rate, clip.channel)


@lru_cache(maxsize=8)
def logmel_transform(params: LogMelParams, device: str = "cpu") -> LogMel:
    """One shared `LogMel` module per parameters and device (its filter bank is built once)."""
    return LogMel(params).to(device)


def iter_logmels(
    clips: Sequence[Clip],
    params: LogMelParams = LogMelParams(),
    cache_dir: str | Path | None | bool = None,
    workers: int = 2,
    batch_size: int = 32,
    progress: bool = True,
    device: str = "cpu",
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, log-mel) pairs, chunk by chunk, so callers can store each where it belongs.

    Files are read and hashed in threads; a cache hit skips decoding; misses of equal
    length share one batched STFT. ``cache_dir=None`` uses `default_cache_dir`, ``False``
    disables the cache.
    """
    cache = None if cache_dir is False else FeatureCache(cache_dir or default_cache_dir(), "logmel", params.as_dict())
    transform = logmel_transform(params, device)

    def load(i: int) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        key, raw = _read_bytes(clips[i], hash_content=cache is not None)
        hit = cache.get(key) if cache else None
        wave = None if hit is not None else decode_audio(raw, clips[i].path, params.sample_rate, clips[i].channel)
        return key, hit, wave

    bar = tqdm(total=len(clips), desc="log-mel", unit="clip", disable=not progress, leave=False)
    pool = ThreadPoolExecutor(max_workers=max(1, workers)) if len(clips) > 1 else None
    try:
        chunks = [range(s, min(s + batch_size, len(clips))) for s in range(0, len(clips), batch_size)]
        pending = [pool.submit(load, i) for i in chunks[0]] if pool and chunks else []
        for n, chunk in enumerate(chunks):
            if pool:  # the next chunk's files are read and decoded while this one is transformed
                loaded = dict(zip(chunk, (f.result() for f in pending)))
                pending = [pool.submit(load, i) for i in chunks[n + 1]] if n + 1 < len(chunks) else []
            else:
                loaded = dict(zip(chunk, map(load, chunk)))
            todo: dict[int, list[int]] = {}
            for i, (_, hit, wave) in loaded.items():
                if hit is not None:
                    yield i, hit
                else:
                    todo.setdefault(len(wave), []).append(i)  # type: ignore[arg-type]
            for idx in todo.values():
                batch = torch.from_numpy(np.stack([loaded[i][2] for i in idx])).to(device)  # type: ignore[misc]
                with torch.no_grad():
                    mels = transform(batch).cpu().numpy()
                for i, mel in zip(idx, mels):
                    mel = np.ascontiguousarray(mel, dtype=np.float32)
                    if cache:
                        cache.put(loaded[i][0], mel)
                    yield i, mel
            bar.update(len(chunk))
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)


def logmels(clips: Sequence[Clip], params: LogMelParams = LogMelParams(), cache_dir: str | Path | None | bool = None,
            workers: int = 2, batch_size: int = 32, progress: bool = True, device: str = "cpu") -> list[np.ndarray]:
    """Log-mel (n_mels, frames) float32 for every clip, in input order (see `iter_logmels`)."""
    out: list[np.ndarray | None] = [None] * len(clips)
    for i, mel in iter_logmels(clips, params, cache_dir, workers, batch_size, progress, device):
        out[i] = mel
    return out  # type: ignore[return-value]


def expected_frames(clip: Clip, params: LogMelParams) -> int:
    """Frames a clip will have, from its header alone (soxr's output length is round(n * out / in))."""
    sr, _, seconds = audio_info(clip.path)
    n = int(round(seconds * sr))
    return params.n_frames(n if sr == params.sample_rate else int(round(n * params.sample_rate / sr)))


class FrameBank:
    """All clips' log-mel frames in one (total_frames, n_mels) tensor; n-frame vectors on demand.

    Holds each frame once (0.16 MB per 10 s clip) instead of 640-dim copies (0.79 MB).
    """

    def __init__(self, mels: Sequence[np.ndarray], n_frames: int = 5) -> None:
        if not mels:
            raise ValueError("FrameBank needs at least one clip")
        lengths = [m.shape[1] for m in mels]
        frames = torch.empty(int(sum(lengths)), mels[0].shape[0], dtype=torch.float32)
        for offset, mel in zip(np.concatenate([[0], np.cumsum(lengths)[:-1]]), mels):
            frames[offset:offset + mel.shape[1]] = torch.from_numpy(np.asarray(mel, dtype=np.float32).T)
        self._index(frames, lengths, n_frames)

    @classmethod
    def from_clips(cls, clips: Sequence[Clip], params: LogMelParams, n_frames: int = 5, **kwargs) -> "FrameBank":
        """Extract log-mels straight into one preallocated tensor (sized from the file headers),
        so that peak memory holds every frame once, not a list of arrays plus their copy."""
        lengths = [expected_frames(c, params) for c in clips]
        if not clips or min(lengths) < n_frames:
            return cls(logmels(clips, params, **kwargs), n_frames)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        frames = torch.empty(int(sum(lengths)), params.n_mels, dtype=torch.float32)
        for i, mel in iter_logmels(clips, params, **kwargs):
            if mel.shape[1] != lengths[i]:  # a header that lied: fall back to the simple path
                return cls(logmels(clips, params, **kwargs), n_frames)
            frames[offsets[i]:offsets[i] + lengths[i]] = torch.from_numpy(mel.T)
        bank = cls.__new__(cls)
        bank._index(frames, lengths, n_frames)
        return bank

    def _index(self, frames: torch.Tensor, lengths: Sequence[int], n_frames: int) -> None:
        if min(lengths) < n_frames:
            raise ValueError(f"a clip has fewer than {n_frames} frames")
        self.frames, self.n_frames, self.n_mels = frames, n_frames, frames.shape[1]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        counts = [n - n_frames + 1 for n in lengths]
        self.starts = torch.from_numpy(np.concatenate([o + np.arange(c) for o, c in zip(offsets, counts)]))
        self.clip_index = torch.from_numpy(np.repeat(np.arange(len(lengths)), counts))
        self._window = torch.arange(n_frames)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def dim(self) -> int:
        return self.n_mels * self.n_frames

    def vectors(self, idx: torch.Tensor) -> torch.Tensor:
        """Stacked vectors for vector indices ``idx`` -> (len(idx), n_mels * n_frames)."""
        rows = self.starts[idx][:, None] + self._window
        return self.frames[rows].reshape(len(idx), -1)
