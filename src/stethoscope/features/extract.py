"""Decoding and log-mel extraction: each file read and decoded once, batched torch maths,
an optional on-disk cache keyed by content."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
import soxr
import torch

from ..data.audio import SAMPLE_RATE, audio_info, decode_checked, read_file
from ..data.clip import Clip
from ..data.policy import AudioPolicy, current_policy
from ..data.quality import WaveStats, header_of
from ..errors import AudioError, AudioSkipped, StethoscopeError
from ..progress import progress as show_progress
from .cache import FeatureCache
from .logmel import LogMel, LogMelParams
from .spill import float32_array

T = TypeVar("T")


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


def decoded_logmels(
    clips: Sequence[Clip],
    params: LogMelParams = LogMelParams(),
    cache_dir: str | Path | None = None,
    progress: bool = True,
    min_frames: int = 1,
) -> tuple[list[Clip], list[np.ndarray]]:
    """(clips, their log-mels (n_mels, frames) float32) in input order, for the clips the
    audio policy kept (all of them unless it skips files)."""
    kept: list[Clip] = []
    mels: list[np.ndarray] = []
    for part in iter_decoded(
        clips, FeatureRequest(logmel=params, min_frames=min_frames), cache_dir, progress
    ):
        kept += part.required_clips()[0]
        mels += part.required_logmels()
    if clips and not kept:
        raise _nothing_left(len(clips))
    return kept, mels


def logmels(
    clips: Sequence[Clip],
    params: LogMelParams = LogMelParams(),
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """Log-mel (n_mels, frames) float32 for every clip the audio policy kept, in input order
    (`decoded_logmels` says which clips those are)."""
    return decoded_logmels(clips, params, cache_dir, progress)[1]


def _nothing_left(n: int) -> StethoscopeError:
    return StethoscopeError(
        f"all {n} clips were left out by the audio checks (--on-bad-audio); nothing to use"
    )


def expected_frames(clip: Clip, params: LogMelParams) -> int:
    """Frames a clip will have, from its header alone (soxr's output length is round(n * out /
    in))."""
    sr, _, seconds = audio_info(clip.path)
    n = round(seconds * sr)
    return params.n_frames(n if sr == params.sample_rate else round(n * params.sample_rate / sr))


def _header_frames(clip: Clip, params: LogMelParams) -> int:
    """`expected_frames`, or 0 where the header is unusable (the decoding pass then judges the
    file)."""
    try:
        return expected_frames(clip, params)
    except AudioError:
        return 0


class MelStore:
    """Every kept clip's log-mel frames in one (total_frames, n_mels) float32 array, each frame
    once.

    The array is in RAM within the feature budget and memory-mapped past it (`spill`); clip i
    is the (n_mels, frames) view `mel(i)`. 10 s clips take 0.16 MB each. ``clips`` are the
    clips the audio policy kept, in order (None when built from arrays).
    """

    def __init__(
        self, frames: np.ndarray, lengths: Sequence[int], clips: list[Clip] | None = None
    ) -> None:
        self.array = frames
        self.frames = torch.from_numpy(frames)
        self.lengths = list(lengths)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.spilled = isinstance(frames, np.memmap)
        self.clips = clips

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_mels(self) -> int:
        return self.array.shape[1]

    def mel(self, i: int) -> np.ndarray:
        """Clip i's log-mel, (n_mels, frames): a view, no copy."""
        return self.array[self.offsets[i] : self.offsets[i] + self.lengths[i]].T

    def mels(self) -> list[np.ndarray]:
        return [self.mel(i) for i in range(len(self))]

    @classmethod
    def from_mels(
        cls,
        mels: Sequence[np.ndarray],
        spill_dir: str | Path | None = None,
        clips: list[Clip] | None = None,
    ) -> MelStore:
        if not mels:
            raise ValueError("MelStore needs at least one clip")
        lengths = [m.shape[1] for m in mels]
        frames = float32_array(int(sum(lengths)), mels[0].shape[0], spill_dir)
        for offset, mel in zip(np.concatenate([[0], np.cumsum(lengths)[:-1]]), mels, strict=True):
            frames[offset : offset + mel.shape[1]] = np.asarray(mel, dtype=np.float32).T
        return cls(frames, lengths, clips)

    @classmethod
    def from_clips(
        cls,
        clips: Sequence[Clip],
        request: FeatureRequest,
        cache_dir: str | Path | None = None,
        progress: bool = True,
        each: Callable[[Decoded], T] | None = None,
        spill_dir: str | Path | None = None,
    ) -> tuple[MelStore, list[T]]:
        """Extract log-mels straight into one array sized from the file headers, so that peak
        memory holds every frame once (not a list of arrays plus their copy); ``each`` is called
        on every `Decoded` chunk (e.g. to embed its waveforms) and its results are returned.
        Clips the audio policy leaves out are dropped (`clips` says which were kept)."""
        assert request.logmel is not None, "a MelStore needs log-mels"
        if not clips:
            raise ValueError("MelStore needs at least one clip")
        lengths = [_header_frames(c, request.logmel) for c in clips]
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        frames = float32_array(int(sum(lengths)), request.logmel.n_mels, spill_dir)
        results: list[T] = []
        kept: list[int] = []
        for part in iter_decoded(clips, request, cache_dir, progress):
            for i, mel in zip(part.required_clips()[1], part.required_logmels(), strict=True):
                if mel.shape[1] != lengths[i]:  # a header that lied: start again the simple way
                    return cls._listed(clips, request, cache_dir, progress, each, spill_dir)
                frames[offsets[i] : offsets[i] + lengths[i]] = mel.T
                kept.append(i)
            if each is not None:
                results.append(each(part))
        if not kept:
            raise _nothing_left(len(clips))
        if len(kept) < len(clips):  # files left out by the audio policy: drop their rows
            rows = np.concatenate([np.arange(offsets[i], offsets[i] + lengths[i]) for i in kept])
            compact = float32_array(len(rows), request.logmel.n_mels, spill_dir)
            compact[:] = frames[rows]
            frames = compact
        return cls(frames, [lengths[i] for i in kept], [clips[i] for i in kept]), results

    @classmethod
    def _listed(
        cls,
        clips: Sequence[Clip],
        request: FeatureRequest,
        cache_dir: str | Path | None,
        progress: bool,
        each: Callable[[Decoded], T] | None,
        spill_dir: str | Path | None,
    ) -> tuple[MelStore, list[T]]:
        kept: list[Clip] = []
        mels: list[np.ndarray] = []
        results: list[T] = []
        for part in iter_decoded(clips, request, cache_dir, progress):
            kept += part.required_clips()[0]
            mels += part.required_logmels()
            if each is not None:
                results.append(each(part))
        if not kept:
            raise _nothing_left(len(clips))
        return cls.from_mels(mels, spill_dir, kept), results


class FrameBank:
    """All clips' log-mel frames (a `MelStore`); n-frame vectors gathered on demand.

    Holds each frame once (0.16 MB per 10 s clip) instead of 640-dim copies (0.79 MB).
    ``clips`` (where built `from_clips`) are the clips in the bank, in order: those the audio
    policy kept.
    """

    def __init__(self, mels: Sequence[np.ndarray] | MelStore, n_frames: int = 5) -> None:
        store = mels if isinstance(mels, MelStore) else MelStore.from_mels(mels)
        if min(store.lengths) < n_frames:
            raise ValueError(f"a clip has fewer than {n_frames} frames")
        self.store, self.frames, self.n_frames, self.n_mels = (
            store,
            store.frames,
            n_frames,
            store.n_mels,
        )
        self.clips = store.clips  # the clips the audio policy kept (None when built from arrays)
        counts = [n - n_frames + 1 for n in store.lengths]
        self.starts = torch.from_numpy(
            np.concatenate([o + np.arange(c) for o, c in zip(store.offsets, counts, strict=True)])
        )
        self.clip_index = torch.from_numpy(np.repeat(np.arange(len(store)), counts))
        self._window = torch.arange(n_frames)

    @classmethod
    def from_clips(
        cls,
        clips: Sequence[Clip],
        params: LogMelParams,
        n_frames: int = 5,
        cache_dir: str | Path | None = None,
        progress: bool = True,
    ) -> FrameBank:
        """A bank extracted straight into one array (`MelStore.from_clips`); past the RAM budget
        that array is memory-mapped in the feature cache folder (or the temporary folder).
        Clips shorter than ``n_frames`` frames are unreadable to the audio policy."""
        store, _ = MelStore.from_clips(
            clips,
            FeatureRequest(logmel=params, min_frames=n_frames),
            cache_dir,
            progress,
            spill_dir=cache_dir,
        )
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
