"""EfficientAT "mn04": an AudioSet-trained MobileNetV3 (width 0.4) as a frozen encoder.

Written from the architecture description (MobileNetV3-Large block table, torchvision-style
module names so that the official ``mn04_as_mAP_432.pt`` state_dict loads with
``strict=True``). Front end (evaluation mode): 16 kHz -> 32 kHz (exact polyphase,
``resample_poly(x, 2, 1)``), pre-emphasis as a 2-tap valid convolution (one sample shorter),
centred STFT (n_fft 1024, symmetric Hann of 800 samples, hop 320), power, 128 Kaldi mel
banks 0-15 kHz, ``log(mel + 1e-5)``, ``(x + 4.5) / 5``.

Outputs: the 384-d globally pooled feature (clip embedding), the 512-d hidden layer of the
classifier head, the 527 AudioSet logits, and a frame-level feature map pooled over frequency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.signal
import torch
from torch import nn

from ..errors import CheckpointError
from .base import Encoder
from .fbank import kaldi_mel_banks
from .weights import find_weights

MN04_FILE = "mn04_as_mAP_432.pt"
MN04_SHA256 = "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c"
MN04_URL = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/mn04_as_mAP_432.pt"
SINE_WAVE_CLASS = 501  # AudioSet "Sine wave"


# -- front end ---------------------------------------------------------------------------
class EfficientATMel(nn.Module):
    """(batch, samples at 32 kHz) -> (batch, 128, frames) normalised log-mel."""

    # buffers (typed here: nn.Module's attribute lookup is untyped)
    window: torch.Tensor
    banks: torch.Tensor

    def __init__(
        self,
        n_mels: int = 128,
        sample_rate: int = 32_000,
        n_fft: int = 1024,
        win_length: int = 800,
        hop_length: int = 320,
        fmin: float = 0.0,
        fmax: float = 15_000.0,
    ) -> None:
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.register_buffer(
            "window", torch.hann_window(win_length, periodic=False), persistent=False
        )
        banks = kaldi_mel_banks(n_mels, n_fft, sample_rate, fmin, fmax)
        self.register_buffer("banks", nn.functional.pad(banks, (0, 1)), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        emphasised = waves[:, 1:] - 0.97 * waves[:, :-1]
        spec = torch.stft(
            emphasised,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            return_complex=True,
        )
        power = spec.real.pow(2) + spec.imag.pow(2)
        mel = torch.matmul(self.banks, power)
        return ((mel + 1e-5).log() + 4.5) / 5.0


# -- network -----------------------------------------------------------------------------
def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never more than 10 % below ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual block of MobileNetV3-Large (channels before width scaling)."""

    in_ch: int
    kernel: int
    expand_ch: int
    out_ch: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (Hardswish)
    stride: int


MOBILENET_V3_LARGE = (
    BlockSpec(16, 3, 16, 16, False, "RE", 1),
    BlockSpec(16, 3, 64, 24, False, "RE", 2),
    BlockSpec(24, 3, 72, 24, False, "RE", 1),
    BlockSpec(24, 5, 72, 40, True, "RE", 2),
    BlockSpec(40, 5, 120, 40, True, "RE", 1),
    BlockSpec(40, 5, 120, 40, True, "RE", 1),
    BlockSpec(40, 3, 240, 80, False, "HS", 2),
    BlockSpec(80, 3, 200, 80, False, "HS", 1),
    BlockSpec(80, 3, 184, 80, False, "HS", 1),
    BlockSpec(80, 3, 184, 80, False, "HS", 1),
    BlockSpec(80, 3, 480, 112, True, "HS", 1),
    BlockSpec(112, 3, 672, 112, True, "HS", 1),
    BlockSpec(112, 5, 672, 160, True, "HS", 2),
    BlockSpec(160, 5, 960, 160, True, "HS", 1),
    BlockSpec(160, 5, 960, 160, True, "HS", 1),
)


def _activation(kind: str) -> nn.Module:
    return nn.ReLU(inplace=True) if kind == "RE" else nn.Hardswish(inplace=True)


def conv_bn_act(
    in_ch: int,
    out_ch: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    activation: str | None = None,
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (eps 1e-3) + optional activation, named 0 / 1 / 2."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=0.001, momentum=0.01),
    ]
    if activation is not None:
        layers.append(_activation(activation))
    return nn.Sequential(*layers)


class ChannelSE(nn.Module):
    """Squeeze-excitation over channels: mean over (freq, time) -> fc -> ReLU -> fc -> sigmoid."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3))
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(scale))))
        return x * scale[:, :, None, None]


class SEBlock(nn.Module):
    """Holds the SE layer under the checkpoint's name ``conc_se_layers.0``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.conc_se_layers = nn.ModuleList(
            [ChannelSE(channels, make_divisible(channels // reduction, 8))]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conc_se_layers[0](x)


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise kxk -> (SE) -> project 1x1, residual when shapes allow."""

    def __init__(self, spec: BlockSpec, width: float) -> None:
        super().__init__()
        in_ch, mid_ch, out_ch = (
            make_divisible(c * width) for c in (spec.in_ch, spec.expand_ch, spec.out_ch)
        )
        self.use_residual = spec.stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if mid_ch != in_ch:
            layers.append(conv_bn_act(in_ch, mid_ch, 1, activation=spec.activation))
        layers.append(
            conv_bn_act(
                mid_ch, mid_ch, spec.kernel, spec.stride, groups=mid_ch, activation=spec.activation
            )
        )
        if spec.use_se:
            layers.append(SEBlock(mid_ch))
        layers.append(conv_bn_act(mid_ch, out_ch, 1))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


@dataclass
class MobileNetOutput:
    """Everything one forward pass gives."""

    feature_map: torch.Tensor  # (B, C, F', T') before pooling
    embedding: torch.Tensor  # (B, C) global average pool
    hidden: torch.Tensor  # (B, 512) classifier hidden layer (after Hardswish)
    logits: torch.Tensor  # (B, n_classes)


class MobileNetV3Audio(nn.Module):
    """EfficientAT's MobileNetV3 on a (B, 1, mels, frames) log-mel."""

    def __init__(self, width: float = 0.4, n_classes: int = 527) -> None:
        super().__init__()
        first = make_divisible(16 * width)
        blocks: list[nn.Module] = [conv_bn_act(1, first, 3, stride=2, activation="HS")]
        blocks += [InvertedResidual(spec, width) for spec in MOBILENET_V3_LARGE]
        last_in = make_divisible(MOBILENET_V3_LARGE[-1].out_ch * width)
        self.embed_dim = 6 * last_in
        blocks.append(conv_bn_act(last_in, self.embed_dim, 1, activation="HS"))
        self.features = nn.Sequential(*blocks)
        self.hidden_dim = make_divisible(1280 * width)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(self.embed_dim, self.hidden_dim),
            nn.Hardswish(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(self.hidden_dim, n_classes),
        )

    def forward(self, mel: torch.Tensor) -> MobileNetOutput:
        fmap = self.features(mel)
        embedding = fmap.mean(dim=(2, 3))
        hidden = self.classifier[3](self.classifier[2](embedding))
        logits = self.classifier[5](self.classifier[4](hidden))
        return MobileNetOutput(fmap, embedding, hidden, logits)


# -- encoder -----------------------------------------------------------------------------
def resample_16k_to_32k(wave: np.ndarray) -> np.ndarray:
    """Exact 2x polyphase up-sampling (scipy's Kaiser-windowed FIR)."""
    return scipy.signal.resample_poly(wave, 2, 1).astype(np.float32)


def load_mn04_state(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise CheckpointError(f"{path}: not a readable torch state_dict ({err})") from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


@torch.no_grad()
def calibrate_batchnorm(model: MobileNetV3Audio, frontend: EfficientATMel, seed: int) -> None:
    """Give a randomly initialised network usable BatchNorm statistics.

    With fresh statistics (mean 0, variance 1) activations shrink about 10x per stage and
    the embedding ends near 1e-8; instead, the running statistics are set from a fixed,
    seeded batch of white and brown noise at a few levels (never from user data), so the
    random control encoder gives well-scaled, deterministic features.
    """
    gen = np.random.default_rng(seed)
    white = gen.standard_normal((4, 64_000))
    brown = np.cumsum(gen.standard_normal((4, 64_000)), axis=1)
    brown /= brown.std(axis=1, keepdims=True)
    waves = np.concatenate([white, brown]) * np.array([0.01, 0.05, 0.1, 0.3] * 2)[:, None]
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
    model.train()
    model(frontend(torch.from_numpy(waves.astype(np.float32)))[:, None])
    model.eval()


class EfficientATEncoder(Encoder):
    """Frozen mn04 clip encoder; ``layer`` "pooled" (384-d, default) or "hidden" (512-d)."""

    name = "efficientat_mn04"
    sample_rate = 32_000

    def __init__(
        self,
        device: str = "cpu",
        weights_path: str | None = None,
        layer: str = "pooled",
        pretrained: bool = True,
        seed: int = 0,
        batch_size: int = 16,
    ) -> None:
        if layer not in ("pooled", "hidden"):
            raise ValueError(f"layer must be 'pooled' or 'hidden', got {layer!r}")
        self.device = torch.device(device)
        self.layer, self.batch_size = layer, batch_size
        torch.manual_seed(seed)
        self.model = MobileNetV3Audio()
        self.weights_file: str | None = None
        self.weights_sha256 = "random"
        if pretrained:
            path = find_weights(MN04_FILE, MN04_SHA256, MN04_URL, weights_path)
            try:
                self.model.load_state_dict(load_mn04_state(str(path)), strict=True)
            except RuntimeError as err:
                raise CheckpointError(
                    f"{path}: does not match the mn04 architecture ({err})"
                ) from err
            self.weights, self.weights_file, self.weights_sha256 = (
                "pretrained",
                str(path),
                MN04_SHA256,
            )
        else:
            self.weights = "random"
        self.dim = self.model.embed_dim if layer == "pooled" else self.model.hidden_dim
        self.frontend = EfficientATMel()
        if not pretrained:
            calibrate_batchnorm(self.model, self.frontend, seed)
        self.model.eval().requires_grad_(False).to(self.device)
        self.frontend.eval().to(self.device)

    def preprocess(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[torch.Tensor]:
        """Per clip (1, 128, frames) mel at 32 kHz."""
        if sample_rate not in (16_000, 32_000):
            raise ValueError(f"EfficientAT expects 16 kHz (or 32 kHz) input, got {sample_rate} Hz")
        out = []
        for wave in waveforms:
            wave32 = (
                resample_16k_to_32k(wave) if sample_rate == 16_000 else np.asarray(wave, np.float32)
            )
            with torch.no_grad():
                out.append(self.frontend(torch.from_numpy(wave32)[None].to(self.device)))
        return out

    @torch.no_grad()
    def forward_all(
        self, waveforms: Sequence[np.ndarray], sample_rate: int
    ) -> list[MobileNetOutput]:
        """Model outputs per batch of equal-length clips, in input order (one entry per clip)."""
        mels = self.preprocess(waveforms, sample_rate)
        results: list[MobileNetOutput | None] = [None] * len(mels)
        by_len: dict[int, list[int]] = {}
        for i, mel in enumerate(mels):
            by_len.setdefault(mel.shape[-1], []).append(i)
        for idx in by_len.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                out = self.model(torch.cat([mels[i] for i in chunk])[:, None])
                for j, i in enumerate(chunk):
                    results[i] = MobileNetOutput(
                        out.feature_map[j : j + 1],
                        out.embedding[j : j + 1],
                        out.hidden[j : j + 1],
                        out.logits[j : j + 1],
                    )
        return results  # type: ignore[return-value]

    def embed(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        outs = self.forward_all(waveforms, sample_rate)
        if not outs:
            return np.zeros((0, self.dim), np.float32)
        rows = [o.embedding if self.layer == "pooled" else o.hidden for o in outs]
        return torch.cat(rows).cpu().numpy().astype(np.float32)

    def logits(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        """(n, 527) AudioSet logits (only meaningful with pretrained weights)."""
        return torch.cat([o.logits for o in self.forward_all(waveforms, sample_rate)]).cpu().numpy()

    def embed_frames(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        """Per clip (frames', 384) feature map averaged over frequency (32x time down-sampling)."""
        return [
            o.feature_map.mean(dim=2)[0].T.cpu().numpy()
            for o in self.forward_all(waveforms, sample_rate)
        ]
