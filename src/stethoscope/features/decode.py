"""Reading and decoding clips into waveforms and log-mels, in chunks: each file read and
decoded once (through the audio policy), batched torch maths, an optional on-disk cache keyed by
content. `extract` builds the whole-data-set containers (`MelStore`, `FrameBank`) on top."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soxr
import torch

from ..data.audio import SAMPLE_RATE, decode_checked, read_file
from ..data.clip import Clip
from ..data.policy import AudioPolicy, current_policy
from ..data.quality import header_of
from ..data.samples import WaveStats
from ..errors import AudioSkipped, StethoscopeError
from ..progress import progress as show_progress
from .cache import FeatureCache
from .logmel import LogMel, LogMelParams


def _read_bytes(clip: Clip, hash_content: bool, policy: AudioPolicy) -> tuple[str, bytes]:
    """(content key, raw bytes) of a clip's file: the key hashes the bytes (sha256, the fastest
    hashlib digest on CPUs with SHA extensions) and the channel; "" when not hashed. A FIFO,
    folder or device is refused by the audio policy without being opened."""
    raw = read_file(clip.path, policy)
    if not hash_content:
        return "", raw
    channel = "mean" if clip.channel is None else clip.channel
    return hashlib.sha256(raw).hexdigest()[:32] + f"-c{channel}", raw


@lru_cache(maxsize=8)
def logmel_transform(params: LogMelParams, device: str = "cpu") -> LogMel:
    """One shared `LogMel` module per parameters and device (its filter bank is built once)."""
    return LogMel(params).to(device)


@dataclass(frozen=True)
class FeatureRequest:
    """What a system reads from each clip: its log-mel (with these parameters), its
    16 kHz waveform, or both. One decoding pass serves every branch. ``min_frames``: the
    fewest log-mel frames a clip must give (shorter clips are unreadable to the audio policy)."""

    logmel: LogMelParams | None = None
    wave: bool = False
    min_frames: int = 1

    @property
    def min_seconds(self) -> float:
        """The shortest clip this request can use: one full STFT window, and ``min_frames``
        frames."""
        p = self.logmel or LogMelParams()
        return max(p.n_fft, (self.min_frames - 1) * p.hop_length) / p.sample_rate


@dataclass
class Decoded:
    """A chunk of clips, each file read, hashed and decoded once.

    ``keys`` are content keys for caches ("" where nothing was hashed: no cache, or audio
    that never was a file); ``waves`` and ``logmels`` are filled as the request asked.
    ``clips`` are the clips in the chunk and ``index`` their positions in the sequence given
    to `iter_decoded`: clips the audio policy left out (``--on-bad-audio skip|warn``) are in
    no chunk, so code that pairs outputs with clips reads these, not its own list.
    """

    keys: list[str]
    waves: list[np.ndarray] | None = None
    logmels: list[np.ndarray] | None = None
    clips: Sequence[Clip] | None = None
    index: list[int] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def required_logmels(self) -> list[np.ndarray]:
        """``logmels``, for code whose request asked for them (a clear error where it did not)."""
        if self.logmels is None:
            raise StethoscopeError(
                "internal: this chunk has no log-mels (its request asked for none)"
            )
        return self.logmels

    def required_clips(self) -> tuple[Sequence[Clip], list[int]]:
        """(``clips``, ``index``) of a chunk `iter_decoded` made (in-memory waves have none)."""
        if self.clips is None or self.index is None:
            raise StethoscopeError("internal: this chunk has no clips (it was decoded from memory)")
        return self.clips, self.index


def _logmel_batch(waves: Sequence[np.ndarray], params: LogMelParams) -> list[np.ndarray]:
    """Log-mels of waveforms; equal lengths share one batched STFT."""
    transform = logmel_transform(params)
    out: dict[int, np.ndarray] = {}
    by_length: dict[int, list[int]] = {}
    for i, wave in enumerate(waves):
        by_length.setdefault(len(wave), []).append(i)
    for idx in by_length.values():
        with torch.no_grad():
            mels = transform(torch.from_numpy(np.stack([waves[i] for i in idx]))).numpy()
        for i, mel in zip(idx, mels, strict=True):
            out[i] = np.ascontiguousarray(mel, dtype=np.float32)
    return [out[i] for i in range(len(waves))]


def _decoded(wave: np.ndarray | None) -> np.ndarray:
    """A wave `iter_decoded`'s loader returned: it decodes every cache miss and every file
    whose wave the request wants, so only a hit of a log-mel-only request has none."""
    if wave is None:
        raise StethoscopeError("internal: a clip the log-mel cache missed was not decoded")
    return wave


def _chunk_logmels(
    loaded: Sequence[tuple[str, np.ndarray | None, np.ndarray | None]],
    params: LogMelParams,
    cache: FeatureCache | None,
) -> list[np.ndarray]:
    """Log-mels of one chunk of (key, cache hit, wave): the hits as read, the misses in one
    batch (each then cached)."""
    misses = [(key, _decoded(wave)) for key, hit, wave in loaded if hit is None]
    fresh = _logmel_batch([wave for _, wave in misses], params)
    if cache:
        for (key, _), mel in zip(misses, fresh, strict=True):
            cache.put(key, mel)
    computed = iter(fresh)
    return [hit if hit is not None else next(computed) for _, hit, _ in loaded]


class _ClipLoader:
    """Reads, hashes and decodes one clip for `iter_decoded`, in its worker threads: (content
    key, cached log-mel or None, wave or None), or None for a clip the audio policy skips."""

    def __init__(self, request: FeatureRequest, cache_dir: str | Path | None) -> None:
        self.request, self.hash_content = request, cache_dir is not None
        self.cache: FeatureCache | None = None
        self.stats_cache: FeatureCache | None = None
        if cache_dir is not None and request.logmel is not None:
            self.cache = FeatureCache(cache_dir, "logmel", request.logmel.as_dict())
            self.stats_cache = FeatureCache(
                cache_dir, "wavestats", {"fields": list(WaveStats.__dataclass_fields__)}
            )
        self.sample_rate = request.logmel.sample_rate if request.logmel else SAMPLE_RATE
        self.policy = (
            current_policy()
        )  # read here: the worker threads do not see the caller's context

    def checked_hit(self, clip: Clip, key: str, raw: bytes) -> np.ndarray | None:
        """A cached log-mel whose file passes the policy on its cached stats and its header
        (read from ``raw``, the bytes the key hashed: the file is not opened again)."""
        hit = self.cache.get(key) if self.cache else None
        stats = self.stats_cache.get(key) if self.stats_cache and hit is not None else None
        if hit is None or stats is None:
            return None
        _, header_problems = header_of(raw, clip.path)
        problems = WaveStats.from_array(stats).problems(self.request.min_seconds)
        unreadable = any(p.unreadable for p in problems)
        self.policy.require(clip.path, problems if unreadable else header_problems + problems)
        return hit

    def __call__(self, clip: Clip) -> tuple[str, np.ndarray | None, np.ndarray | None] | None:
        request, policy = self.request, self.policy
        if policy.is_skipped(clip.path):
            return None
        try:
            key, raw = _read_bytes(clip, self.hash_content, policy)
            hit = self.checked_hit(clip, key, raw) if not request.wave else None
            wave = None
            if hit is None or request.wave:
                wave, stats = decode_checked(
                    raw, clip.path, self.sample_rate, clip.channel, request.min_seconds, policy
                )
                if self.stats_cache:
                    self.stats_cache.put(key, stats.as_array())
        except AudioSkipped:
            return None
        return key, hit, wave


def iter_decoded(
    clips: Sequence[Clip],
    request: FeatureRequest,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    chunk: int = 32,
    workers: int = 2,
) -> Iterator[Decoded]:
    """`Decoded` chunks of ``clips`` in input order.

    Files are read (and hashed, when a cache is used) in threads while the previous chunk
    is transformed. Each decoded file's samples are checked by the active audio policy in
    the same pass (`data.audio.decode_checked`); with ``cache_dir`` a log-mel cache hit skips
    decoding unless the waveform is wanted too, and the checks then read the file's cached
    `WaveStats` and header instead. ``cache_dir=None`` reads and writes no cache.
    """
    load = _ClipLoader(request, cache_dir)
    chunks = [range(s, min(s + chunk, len(clips))) for s in range(0, len(clips), chunk)]
    bar = show_progress(desc="decode", unit="clip", total=len(clips), enabled=progress)
    pool = ThreadPoolExecutor(max_workers=max(1, workers)) if len(clips) > 1 else None
    try:
        pending = [pool.submit(load, clips[i]) for i in chunks[0]] if pool and chunks else []
        for n, part in enumerate(chunks):
            if pool:  # the next chunk's files are read and decoded while this one is transformed
                results = [f.result() for f in pending]
                pending = (
                    [pool.submit(load, clips[i]) for i in chunks[n + 1]]
                    if n + 1 < len(chunks)
                    else []
                )
            else:
                results = [load(clips[i]) for i in part]
            bar.update(len(part))
            index = [i for i, r in zip(part, results, strict=True) if r is not None]
            if not index:
                continue
            loaded = [r for r in results if r is not None]
            out = Decoded(
                keys=[k for k, _, _ in loaded], clips=[clips[i] for i in index], index=index
            )
            if request.wave:
                out.waves = [_decoded(w) for _, _, w in loaded]
            if request.logmel is not None:
                out.logmels = _chunk_logmels(loaded, request.logmel, load.cache)
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
