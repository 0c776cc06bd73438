"""Kaldi-compatible log-mel filter banks in plain torch (no torchaudio), batched.

Reproduces ``torchaudio.compliance.kaldi.fbank`` for the settings EAT and BEATs use:
frames of 25 ms every 10 ms with ``snip_edges`` (only whole frames), per-frame DC removal,
pre-emphasis 0.97 (the first sample of a frame is its own predecessor), a symmetric Hann
("hanning") or Povey (Hann^0.85) window, zero padding to the next power of two, power
spectrum, Kaldi/HTK-mel triangular banks from ``low_freq`` to ``high_freq`` (<= 0 means
relative to Nyquist) and ``log(max(energy, float32 eps))``. Dither is 0, energy is not used.
Also gives the Kaldi mel banks that EfficientAT's front end uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import torch

FLOAT_EPS = torch.finfo(torch.float32).eps


@overload
def mel_scale(freq: torch.Tensor) -> torch.Tensor: ...
@overload
def mel_scale(freq: float) -> float: ...
def mel_scale(freq: torch.Tensor | float) -> torch.Tensor | float:
    """Kaldi / HTK mel scale, 1127 ln(1 + f / 700)."""
    if isinstance(freq, torch.Tensor):
        return 1127.0 * (1.0 + freq / 700.0).log()
    return 1127.0 * math.log(1.0 + freq / 700.0)


def kaldi_mel_banks(
    n_mels: int, n_fft: int, sample_rate: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """(n_mels, n_fft // 2) triangular filters in the mel domain, as Kaldi builds them
    (no VTLN warping). Callers pad one zero column for the Nyquist bin."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(
            f"bad mel range low={low_freq} high={high_freq} for sample rate {sample_rate}"
        )
    mel_low, mel_high = mel_scale(low_freq), mel_scale(high_freq)
    delta = (mel_high - mel_low) / (n_mels + 1)
    index = torch.arange(n_mels, dtype=torch.float32).unsqueeze(1)
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    mel = mel_scale(
        (sample_rate / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32)
    ).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    return torch.clamp(torch.minimum(up, down), min=0.0)


@dataclass(frozen=True)
class FbankParams:
    """Kaldi fbank settings (defaults: EAT / BEATs at 16 kHz, 128 bins)."""

    sample_rate: int = 16_000
    n_mels: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "hanning"  # or "povey"
    preemphasis: float = 0.97
    low_freq: float = 20.0
    high_freq: float = 0.0
    remove_dc_offset: bool = True

    @property
    def frame_length(self) -> int:
        return int(self.sample_rate * self.frame_length_ms * 0.001)

    @property
    def frame_shift(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms * 0.001)

    @property
    def n_fft(self) -> int:
        return 1 << (self.frame_length - 1).bit_length()

    def n_frames(self, n_samples: int) -> int:
        """Whole frames only (``snip_edges``)."""
        return (
            0
            if n_samples < self.frame_length
            else 1 + (n_samples - self.frame_length) // self.frame_shift
        )


class KaldiFbank(torch.nn.Module):
    """(batch, samples) float waveforms -> (batch, frames, n_mels) log mel energies."""

    # buffers (typed here: nn.Module's attribute lookup is untyped)
    window: torch.Tensor
    banks: torch.Tensor

    def __init__(self, params: FbankParams = FbankParams()) -> None:
        super().__init__()
        if params.window not in ("hanning", "povey"):
            raise ValueError(f"window must be 'hanning' or 'povey', got {params.window!r}")
        self.params = params
        window = torch.hann_window(params.frame_length, periodic=False)
        if params.window == "povey":
            window = window.pow(0.85)
        self.register_buffer("window", window, persistent=False)
        banks = kaldi_mel_banks(
            params.n_mels, params.n_fft, params.sample_rate, params.low_freq, params.high_freq
        )
        self.register_buffer("banks", torch.nn.functional.pad(banks, (0, 1)), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        p = self.params
        if waves.shape[-1] < p.frame_length:
            raise ValueError(
                f"waveform of {waves.shape[-1]} samples is shorter than one frame "
                f"({p.frame_length})"
            )
        frames = waves.unfold(-1, p.frame_length, p.frame_shift)  # (B, T, L)
        if p.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        if p.preemphasis:
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = frames - p.preemphasis * previous
        frames = frames * self.window
        frames = torch.nn.functional.pad(frames, (0, p.n_fft - p.frame_length))
        power = torch.fft.rfft(frames).abs().pow(2)
        energies = power @ self.banks.T
        return torch.clamp(energies, min=FLOAT_EPS).log()
