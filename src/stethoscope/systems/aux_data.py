"""Data glue of the auxiliary classifier: classes from clip metadata, the training
waveforms, and the engine's batches (random crops, optional mixup)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.clip import Clip
from ..errors import StethoscopeError
from ..features.extract import FeatureRequest, iter_decoded
from ..features.logmel import LogMelParams
from ..models.auxiliary.augment import mixup, no_mix

CLASS_MODES = ("section_attributes", "section")


def class_key(clip: Clip, mode: str = "section_attributes") -> str:
    """The auxiliary class of a clip: ``machine/section`` (the DCASE 2020 / MIMII machine id
    or the DCASE 2021+ section), plus ``|key=value;...`` of its attributes (file-name or CSV
    attributes, DCASE 2022+) with ``section_attributes``. The machine type is part of the
    class, so that in a joint fit other machines' clips are negatives (outlier exposure)."""
    key = f"{clip.machine}/{clip.section}"
    if mode == "section_attributes" and clip.attributes:
        key += "|" + ";".join(f"{k}={v}" for k, v in clip.attributes)
    return key


def derive_classes(clips: Sequence[Clip], mode: str) -> tuple[list[str], torch.Tensor]:
    """(sorted class names, class index per clip)."""
    keys = [class_key(c, mode) for c in clips]
    classes = sorted(set(keys))
    lookup = {k: i for i, k in enumerate(classes)}
    return classes, torch.tensor([lookup[k] for k in keys], dtype=torch.long)


def crop_samples(frames: int, params: LogMelParams = LogMelParams()) -> int:
    """Samples of a crop whose centred log-mel has ``frames`` frames."""
    return (frames - 1) * params.hop_length


class WaveBank:
    """The 16 kHz waveforms of the clips the audio checks kept, in order (float32 in RAM:
    0.64 MB per 10 s clip), and seeded random crops of them."""

    def __init__(
        self, waves: list[np.ndarray], clips: list[Clip], index: list[int] | None = None
    ) -> None:
        self.waves, self.clips = waves, clips
        self.index = (
            index if index is not None else list(range(len(clips)))
        )  # positions in the input

    def __len__(self) -> int:
        return len(self.waves)

    @classmethod
    def from_clips(
        cls, clips: Sequence[Clip], cache_dir: str | Path | None = None, progress: bool = True
    ) -> WaveBank:
        waves: list[np.ndarray] = []
        kept: list[Clip] = []
        index: list[int] = []
        for part in iter_decoded(clips, FeatureRequest(wave=True), cache_dir, progress):
            waves += part.waves  # type: ignore[arg-type]
            kept += part.clips  # type: ignore[arg-type]
            index += part.index  # type: ignore[arg-type]
        if clips and not kept:
            raise StethoscopeError(
                f"all {len(clips)} clips were left out by the audio checks (--on-bad-audio)"
            )
        return cls(waves, kept, index)

    def crop(self, i: int, samples: int, generator: torch.Generator) -> torch.Tensor:
        """A random ``samples``-long window of clip i; shorter clips are zero-padded at the end."""
        wave = torch.from_numpy(self.waves[i])
        if len(wave) <= samples:
            return F.pad(wave, (0, samples - len(wave)))
        start = int(torch.randint(0, len(wave) - samples + 1, (1,), generator=generator))
        return wave[start : start + samples]

    def batches(
        self, labels: torch.Tensor, batch_size: int, samples: int, mix: str, alpha: float
    ) -> Callable[[torch.Generator], Iterator[tuple[torch.Tensor, ...]]]:
        """The engine's ``batches(generator)``: shuffled crops, mixed when ``mix`` is not
        ``none``; (waves, y_a, y_b, lam) tuples. A last batch of one clip is skipped (BatchNorm)."""

        def batches(generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
            order = torch.randperm(len(self), generator=generator)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                if len(idx) < 2:
                    continue
                waves = torch.stack([self.crop(int(i), samples, generator) for i in idx])
                yield tuple(
                    no_mix(waves, labels[idx])
                    if mix == "none"
                    else mixup(waves, labels[idx], alpha, generator)
                )

        return batches
