"""Decoding and log-mel extraction: each file read and decoded once, batched torch maths,
an optional on-disk cache keyed by content."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np
import soxr
import torch
from tqdm.auto import tqdm

from ..data.audio import SAMPLE_RATE, audio_info, decode_audio
from ..data.clip import Clip
from ..errors import AudioError
from .cache import FeatureCache
from .logmel import LogMel, LogMelParams
from .spill import float32_array

T = TypeVar("T")


def _read_bytes(clip: Clip, hash_content: bool) -> tuple[str, bytes]:
    """(content key, raw bytes) of a clip's file: the key hashes the bytes (sha256, the fastest
    hashlib digest on CPUs with SHA extensions) and the channel; "" when not hashed."""
    try:
        raw = Path(clip.path).read_bytes()
    except OSError as err:
        raise AudioError(clip.path, f"cannot read file ({err.strerror or err})") from err
    if not hash_content:
        return "", raw
    return hashlib.sha256(raw).hexdigest()[:32] + f"-c{clip.channel}", raw


@lru_cache(maxsize=8)
def logmel_transform(params: LogMelParams, device: str = "cpu") -> LogMel:
    """One shared `LogMel` module per parameters and device (its filter bank is built once)."""
    return LogMel(params).to(device)


@dataclass(frozen=True)
class FeatureRequest:
    """What a system reads from each clip: its log-mel (with these parameters), its
    16 kHz waveform, or both. One decoding pass serves every branch."""

    logmel: LogMelParams | None = None
    wave: bool = False


@dataclass
class Decoded:
    """A chunk of clips, each file read, hashed and decoded once.

    ``keys`` are content keys for caches ("" where nothing was hashed: no cache, or audio
    that never was a file); ``waves`` and ``logmels`` are filled as the request asked.
    """

    keys: list[str]
    waves: list[np.ndarray] | None = None
    logmels: list[np.ndarray] | None = None
    clips: Sequence[Clip] | None = None

    def __len__(self) -> int:
        return len(self.keys)


def _logmel_batch(waves: Sequence[np.ndarray], params: LogMelParams) -> list[np.ndarray]:
    """Log-mels of waveforms; equal lengths share one batched STFT."""
    transform = logmel_transform(params)
    out: list[np.ndarray | None] = [None] * len(waves)
    by_length: dict[int, list[int]] = {}
    for i, wave in enumerate(waves):
        by_length.setdefault(len(wave), []).append(i)
    for idx in by_length.values():
        with torch.no_grad():
            mels = transform(torch.from_numpy(np.stack([waves[i] for i in idx]))).numpy()
        for i, mel in zip(idx, mels):
            out[i] = np.ascontiguousarray(mel, dtype=np.float32)
    return out  # type: ignore[return-value]


def iter_decoded(clips: Sequence[Clip], request: FeatureRequest, cache_dir: str | Path | None = None,
                 progress: bool = True, chunk: int = 32, workers: int = 2) -> Iterator[Decoded]:
    """`Decoded` chunks of ``clips`` in input order.

    Files are read (and hashed, when a cache is used) in threads while the previous chunk
    is transformed. With ``cache_dir`` a log-mel cache hit skips decoding unless the
    waveform is wanted too; ``cache_dir=None`` reads and writes no cache.
    """
    cache = None
    if cache_dir is not None and request.logmel is not None:
        cache = FeatureCache(cache_dir, "logmel", request.logmel.as_dict())
    sample_rate = request.logmel.sample_rate if request.logmel else SAMPLE_RATE

    def load(clip: Clip) -> tuple[str, np.ndarray | None, np.ndarray | None]:
        key, raw = _read_bytes(clip, hash_content=cache_dir is not None)
        hit = cache.get(key) if cache else None
        wave = decode_audio(raw, clip.path, sample_rate, clip.channel) if hit is None or request.wave else None
        return key, hit, wave

    chunks = [clips[s:s + chunk] for s in range(0, len(clips), chunk)]
    bar = tqdm(total=len(clips), desc="decode", unit="clip", disable=not progress, leave=False)
    pool = ThreadPoolExecutor(max_workers=max(1, workers)) if len(clips) > 1 else None
    try:
        pending = [pool.submit(load, c) for c in chunks[0]] if pool and chunks else []
        for n, part in enumerate(chunks):
            if pool:  # the next chunk's files are read and decoded while this one is transformed
                loaded = [f.result() for f in pending]
                pending = [pool.submit(load, c) for c in chunks[n + 1]] if n + 1 < len(chunks) else []
            else:
                loaded = [load(c) for c in part]
            out = Decoded(keys=[k for k, _, _ in loaded], clips=part)
            if request.wave:
                out.waves = [w for _, _, w in loaded]  # type: ignore[misc]
            if request.logmel is not None:
                misses = [i for i, (_, hit, _) in enumerate(loaded) if hit is None]
                mels = [hit for _, hit, _ in loaded]
                for i, mel in zip(misses, _logmel_batch([loaded[i][2] for i in misses], request.logmel)):
                    mels[i] = mel
                    if cache:
                        cache.put(loaded[i][0], mel)
                out.logmels = mels  # type: ignore[assignment]
            bar.update(len(part))
            yield out
    finally:
        bar.close()
        if pool:
            pool.shutdown(cancel_futures=True)


def decode_waves(waves: Sequence[np.ndarray], sample_rate: int, request: FeatureRequest) -> Decoded:
    """In-memory mono waveforms (a stream, an upload) as a `Decoded` chunk: resampled to the
    request's rate, no files, no hashing, nothing written to any cache."""
    target = request.logmel.sample_rate if request.logmel else SAMPLE_RATE
    ready = []
    for wave in waves:
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        if sample_rate != target:
            wave = soxr.resample(wave, sample_rate, target, quality="HQ").astype(np.float32)
        ready.append(np.ascontiguousarray(wave))
    out = Decoded(keys=[""] * len(ready))
    if request.wave:
        out.waves = ready
    if request.logmel is not None:
        out.logmels = _logmel_batch(ready, request.logmel)
    return out


def logmels(clips: Sequence[Clip], params: LogMelParams = LogMelParams(), cache_dir: str | Path | None = None,
            progress: bool = True) -> list[np.ndarray]:
    """Log-mel (n_mels, frames) float32 for every clip, in input order."""
    return [m for part in iter_decoded(clips, FeatureRequest(logmel=params), cache_dir, progress)
            for m in part.logmels]  # type: ignore[union-attr]


def expected_frames(clip: Clip, params: LogMelParams) -> int:
    """Frames a clip will have, from its header alone (soxr's output length is round(n * out / in))."""
    sr, _, seconds = audio_info(clip.path)
    n = int(round(seconds * sr))
    return params.n_frames(n if sr == params.sample_rate else int(round(n * params.sample_rate / sr)))


class MelStore:
    """Every clip's log-mel frames in one (total_frames, n_mels) float32 array, each frame once.

    The array is in RAM within the feature budget and memory-mapped past it (`spill`); clip i
    is the (n_mels, frames) view `mel(i)`. 10 s clips take 0.16 MB each.
    """

    def __init__(self, frames: np.ndarray, lengths: Sequence[int]) -> None:
        self.array = frames
        self.frames = torch.from_numpy(frames)
        self.lengths = list(lengths)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.spilled = isinstance(frames, np.memmap)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_mels(self) -> int:
        return self.array.shape[1]

    def mel(self, i: int) -> np.ndarray:
        """Clip i's log-mel, (n_mels, frames): a view, no copy."""
        return self.array[self.offsets[i]:self.offsets[i] + self.lengths[i]].T

    def mels(self) -> list[np.ndarray]:
        return [self.mel(i) for i in range(len(self))]

    @classmethod
    def from_mels(cls, mels: Sequence[np.ndarray], spill_dir: str | Path | None = None) -> "MelStore":
        if not mels:
            raise ValueError("MelStore needs at least one clip")
        lengths = [m.shape[1] for m in mels]
        frames = float32_array(int(sum(lengths)), mels[0].shape[0], spill_dir)
        for offset, mel in zip(np.concatenate([[0], np.cumsum(lengths)[:-1]]), mels):
            frames[offset:offset + mel.shape[1]] = np.asarray(mel, dtype=np.float32).T
        return cls(frames, lengths)

    @classmethod
    def from_clips(cls, clips: Sequence[Clip], request: FeatureRequest, cache_dir: str | Path | None = None,
                   progress: bool = True, each: Callable[[Decoded], T] | None = None,
                   spill_dir: str | Path | None = None) -> tuple["MelStore", list[T]]:
        """Extract log-mels straight into one array sized from the file headers, so that peak
        memory holds every frame once (not a list of arrays plus their copy); ``each`` is called
        on every `Decoded` chunk (e.g. to embed its waveforms) and its results are returned."""
        assert request.logmel is not None, "a MelStore needs log-mels"
        if not clips:
            raise ValueError("MelStore needs at least one clip")
        lengths = [expected_frames(c, request.logmel) for c in clips]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        frames = float32_array(int(sum(lengths)), request.logmel.n_mels, spill_dir)
        results: list[T] = []
        i = 0
        for part in iter_decoded(clips, request, cache_dir, progress):
            for mel in part.logmels:  # type: ignore[union-attr]
                if mel.shape[1] != lengths[i]:  # a header that lied: start again the simple way
                    return cls._listed(clips, request, cache_dir, progress, each, spill_dir)
                frames[offsets[i]:offsets[i] + lengths[i]] = mel.T
                i += 1
            if each is not None:
                results.append(each(part))
        return cls(frames, lengths), results

    @classmethod
    def _listed(cls, clips: Sequence[Clip], request: FeatureRequest, cache_dir: str | Path | None,
                progress: bool, each: Callable[[Decoded], T] | None,
                spill_dir: str | Path | None) -> tuple["MelStore", list[T]]:
        mels: list[np.ndarray] = []
        results: list[T] = []
        for part in iter_decoded(clips, request, cache_dir, progress):
            mels += part.logmels  # type: ignore[arg-type]
            if each is not None:
                results.append(each(part))
        return cls.from_mels(mels, spill_dir), results


class FrameBank:
    """All clips' log-mel frames (a `MelStore`); n-frame vectors gathered on demand.

    Holds each frame once (0.16 MB per 10 s clip) instead of 640-dim copies (0.79 MB).
    """

    def __init__(self, mels: Sequence[np.ndarray] | MelStore, n_frames: int = 5) -> None:
        store = mels if isinstance(mels, MelStore) else MelStore.from_mels(mels)
        if min(store.lengths) < n_frames:
            raise ValueError(f"a clip has fewer than {n_frames} frames")
        self.store, self.frames, self.n_frames, self.n_mels = store, store.frames, n_frames, store.n_mels
        counts = [n - n_frames + 1 for n in store.lengths]
        self.starts = torch.from_numpy(np.concatenate([o + np.arange(c) for o, c in zip(store.offsets, counts)]))
        self.clip_index = torch.from_numpy(np.repeat(np.arange(len(store)), counts))
        self._window = torch.arange(n_frames)

    @classmethod
    def from_clips(cls, clips: Sequence[Clip], params: LogMelParams, n_frames: int = 5,
                   cache_dir: str | Path | None = None, progress: bool = True) -> "FrameBank":
        """A bank extracted straight into one array (`MelStore.from_clips`); past the RAM budget
        that array is memory-mapped in the feature cache folder (or the temporary folder)."""
        store, _ = MelStore.from_clips(clips, FeatureRequest(logmel=params), cache_dir, progress,
                                       spill_dir=cache_dir)
        return cls(store, n_frames)

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def dim(self) -> int:
        return self.n_mels * self.n_frames

    def vectors(self, idx: torch.Tensor) -> torch.Tensor:
        """Stacked vectors for vector indices ``idx`` -> (len(idx), n_mels * n_frames)."""
        rows = self.starts[idx][:, None] + self._window
        return self.frames[rows].reshape(len(idx), -1)
