"""Log-mel extraction for whole clip lists: `logmels`, and the containers that hold every
frame once (`MelStore`, `FrameBank`). The chunked decoding itself is `decode`'s (re-exported
here: ``FeatureRequest``, ``Decoded``, ``iter_decoded``, ``decode_waves``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ..data.audio import audio_info
from ..data.clip import Clip
from ..errors import AudioError, StethoscopeError
from .decode import Decoded, FeatureRequest, decode_waves, iter_decoded
from .logmel import LogMelParams
from .spill import float32_array

__all__ = [
    "Decoded",
    "FeatureRequest",
    "FrameBank",
    "MelStore",
    "decode_waves",
    "decoded_logmels",
    "expected_frames",
    "iter_decoded",
    "logmels",
]

T = TypeVar("T")


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
