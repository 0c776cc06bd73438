"""Occlusion anomaly maps for systems that score whole waveforms through an embedding
(aux_classifier), where no reconstruction says which time-frequency cells are abnormal.

The clip's STFT (the explain log-mel's own geometry: n_fft, hop, centred) is cut into
``bands`` mel bands x ``chunks`` time chunks. Each region in turn is deleted (its STFT
coefficients set to zero, the waveform rebuilt by the inverse STFT) and the clip scored
again. A region's map value is how much deleting it lowers the anomaly score,
``max(0, score - score without it)``: the parts whose removal makes the clip sound more
normal. Deleting a normal part can also raise the score (a hole is unusual); that is not
evidence of an anomaly there, so negative changes are 0. The map has the explain log-mel's
shape, constant within each region; one explanation costs ``bands * chunks + 1`` scorings,
in batches (Zeiler and Fergus, "Visualizing and understanding convolutional networks",
ECCV 2014, occlusion sensitivity).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np
import torch

from ..features.logmel import LogMelParams, mel_filterbank

BANDS = 8
CHUNKS = 10


def _edges(total: int, parts: int) -> list[tuple[int, int]]:
    cuts = np.linspace(0, total, min(parts, total) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in pairwise(cuts) if b > a]


def occlusion_map(
    wave: np.ndarray,
    score_waves: Callable[[Sequence[np.ndarray]], np.ndarray],
    params: LogMelParams,
    bands: int = BANDS,
    chunks: int = CHUNKS,
) -> tuple[float, np.ndarray]:
    """(score of ``wave``, map of shape (n_mels, frames)); ``score_waves`` scores a list of
    waveforms of ``wave``'s length (higher = more anomalous)."""
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    window = torch.hann_window(params.n_fft)
    spec = torch.stft(
        x,
        params.n_fft,
        params.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # (n_fft // 2 + 1, frames)
    filters = mel_filterbank(params.sample_rate, params.n_fft, params.n_mels)  # (n_mels, bins)
    owner = np.where(
        filters.sum(axis=0) > 0, filters.argmax(axis=0), -1
    )  # each bin's strongest mel band
    mel_parts, frame_parts = _edges(params.n_mels, bands), _edges(spec.shape[1], chunks)
    regions, waves = [], [np.asarray(wave, dtype=np.float32)]
    for m0, m1 in mel_parts:
        bins = torch.from_numpy(np.flatnonzero((owner >= m0) & (owner < m1)))
        for f0, f1 in frame_parts:
            cut = spec.clone()
            cut[bins, f0:f1] = 0
            waves.append(
                torch.istft(
                    cut,
                    params.n_fft,
                    params.hop_length,
                    window=window,
                    center=True,
                    length=len(wave),
                ).numpy()
            )
            regions.append((m0, m1, f0, f1))
    scores = np.asarray(score_waves(waves), dtype=np.float64)
    full = float(scores[0])
    amap = np.zeros((params.n_mels, spec.shape[1]), np.float32)
    for (m0, m1, f0, f1), occluded in zip(regions, scores[1:], strict=True):
        amap[m0:m1, f0:f1] = max(0.0, full - float(occluded))
    return full, amap
