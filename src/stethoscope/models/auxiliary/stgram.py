"""STgram-MFN (Liu et al. 2022): a log-mel and a learned waveform "Tgram" stacked as two
channels into a MobileFaceNet-style CNN that ends in a clip embedding.

Written from the paper's description. Differences, all for clips of any length (training on
crops, scoring whole clips) and argued in ``docs/aux_classifier.md``: the Tgram blocks
normalise each channel over time (InstanceNorm with a per-channel affine) instead of a
LayerNorm over a fixed 313 frames, and the global depthwise convolution spans the frequency
axis only, followed by a mean over time, instead of a fixed (8, 20) kernel. ``width``
scales every channel count (1.0 = the paper's 64/128/512 channels).
"""

from __future__ import annotations

import torch
from torch import nn

from ...features.logmel import LogMel, LogMelParams
from .augment import spec_augment

# MobileFaceNet bottlenecks as STgram-MFN uses them: (expansion, channels, repeats, stride)
MFN_SETTING = ((2, 128, 2, 2), (4, 128, 2, 2), (4, 128, 2, 2))


def scaled(channels: int, width: float) -> int:
    """Channels times ``width``, rounded to a multiple of 8 (at least 8)."""
    return max(8, round(channels * width / 8) * 8)


def conv_bn(
    in_ch: int,
    out_ch: int,
    kernel: int | tuple[int, int],
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """Conv2d (no bias) + BatchNorm (+ PReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.PReLU(out_ch))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise (stride), 1x1 linear projection."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = in_ch * expansion
        self.residual = stride == 1 and in_ch == out_ch
        self.body = nn.Sequential(
            conv_bn(in_ch, mid, 1),
            conv_bn(mid, mid, 3, stride, 1, groups=mid),
            conv_bn(mid, out_ch, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _halved(size: int, times: int) -> int:
    """Size after ``times`` stride-2 3x3 convolutions with padding 1."""
    for _ in range(times):
        size = (size - 1) // 2 + 1
    return size


class MobileFaceNet(nn.Module):
    """(B, in_ch, n_mels, frames) -> (B, embedding_dim)."""

    def __init__(
        self, in_ch: int, n_mels: int, width: float = 1.0, embedding_dim: int = 128
    ) -> None:
        super().__init__()
        c64, c512 = scaled(64, width), scaled(512, width)
        layers: list[nn.Module] = [
            conv_bn(in_ch, c64, 3, 2, 1),
            conv_bn(c64, c64, 3, 1, 1, groups=c64),
        ]
        channels = c64
        for expansion, out, repeats, stride in MFN_SETTING:
            for i in range(repeats):
                layers.append(
                    Bottleneck(channels, scaled(out, width), stride if i == 0 else 1, expansion)
                )
                channels = scaled(out, width)
        layers.append(conv_bn(channels, c512, 1))
        self.body = nn.Sequential(*layers)
        freq = _halved(n_mels, 1 + sum(1 for s in MFN_SETTING if s[3] == 2))
        self.gdc = conv_bn(
            c512, c512, (freq, 1), groups=c512, act=False
        )  # global depthwise conv over frequency
        self.embed = nn.Linear(c512, embedding_dim, bias=False)
        self.embed_bn = nn.BatchNorm1d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.gdc(self.body(x)).mean(dim=(2, 3))
        return self.embed_bn(self.embed(pooled))


class TgramBranch(nn.Module):
    """Waveform -> (B, n_mels, frames): a strided 1-D conv with the STFT's window and hop
    (frames aligned with the centred log-mel's), then three norm / LeakyReLU / conv blocks."""

    def __init__(
        self, n_mels: int = 128, n_fft: int = 1024, hop: int = 512, blocks: int = 3
    ) -> None:
        super().__init__()
        self.extract = nn.Conv1d(1, n_mels, n_fft, hop, padding=n_fft // 2, bias=False)
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(
                    nn.InstanceNorm1d(n_mels, affine=True),
                    nn.LeakyReLU(0.2),
                    nn.Conv1d(n_mels, n_mels, 3, 1, 1, bias=False),
                )
                for _ in range(blocks)
            ]
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.extract(waves[:, None]))


class STgramMFN(nn.Module):
    """Waveforms (B, samples) at 16 kHz -> embeddings (B, embedding_dim). SpecAugment masks
    the log-mel channel in training mode when ``specaug`` = (masks, max_freq, max_time) is set."""

    def __init__(
        self,
        n_mels: int = 128,
        width: float = 1.0,
        embedding_dim: int = 128,
        specaug: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        params = LogMelParams(n_mels=n_mels)
        self.logmel = LogMel(params)
        self.tgram = TgramBranch(n_mels, params.n_fft, params.hop_length)
        self.mfn = MobileFaceNet(2, n_mels, width, embedding_dim)
        self.specaug = specaug

    def forward(
        self, waves: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        with torch.autocast(waves.device.type, enabled=False):
            mel = self.logmel(waves.float())
        if self.training and self.specaug is not None:
            mel = spec_augment(mel, *self.specaug, generator=generator)
        x = torch.stack([mel, self.tgram(waves).float()], dim=1)
        return self.mfn(x)
