"""DCASE log-mel spectrograms computed in batches with torch, and 5-frame stacking.

Matches the official baselines' ``librosa.feature.melspectrogram`` (centred STFT with zero
padding, periodic Hann window, Slaney mel scale and norm) followed by ``10 * log10``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

EPS = sys.float_info.epsilon


def _hz_to_mel(freq: float | np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as librosa's default."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    mels = freq / f_sp
    log_part = min_log_mel + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log_part, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    return np.where(
        mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels
    )


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) Slaney-normalised triangular filters, equal to
    librosa.filters.mel."""
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


@dataclass(frozen=True)
class LogMelParams:
    """DCASE defaults. ``log_floor`` "max" is 2023+ (log10(max(x, eps))), "add" is 2020 (log10(x +
    eps))."""

    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    power: float = 2.0
    log_floor: str = "max"

    def as_dict(self) -> dict:
        return asdict(self)

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT: 160,000 samples (10 s) -> 313."""
        return 1 + n_samples // self.hop_length


class LogMel(torch.nn.Module):
    """Batched log-mel: (batch, samples) -> (batch, n_mels, frames)."""

    window: torch.Tensor  # buffers (typed here: nn.Module's attribute lookup is untyped)
    filters: torch.Tensor

    def __init__(self, params: LogMelParams = LogMelParams()) -> None:
        super().__init__()
        if params.log_floor not in ("max", "add"):
            raise ValueError(f"log_floor must be 'max' or 'add', got {params.log_floor!r}")
        self.params = params
        self.register_buffer(
            "window", torch.hann_window(params.n_fft, periodic=True), persistent=False
        )
        fb = mel_filterbank(params.sample_rate, params.n_fft, params.n_mels)
        self.register_buffer("filters", torch.from_numpy(fb), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        p = self.params
        spec = torch.stft(
            waves,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # |X|^2 without the slow complex abs
        mag = power if p.power == 2.0 else power.pow(p.power / 2)
        mel = torch.matmul(self.filters, mag)
        scale = 20.0 / p.power
        if p.log_floor == "max":
            return scale * torch.log10(torch.clamp(mel, min=EPS))
        return scale * torch.log10(mel + EPS)


def stack_frames(logmel: torch.Tensor | np.ndarray, n_frames: int = 5) -> torch.Tensor:
    """(n_mels, T) -> (T - n_frames + 1, n_mels * n_frames) as the DCASE baseline orders it.

    Vector i is [frame i, frame i+1, ..., frame i+n_frames-1] concatenated. Returns a new
    tensor; training code gathers windows on the fly with `FrameBank` instead.
    """
    x = torch.as_tensor(logmel)
    windows = x.unfold(-1, n_frames, 1)  # (n_mels, V, n_frames)
    return windows.permute(1, 2, 0).reshape(windows.shape[1], -1)
