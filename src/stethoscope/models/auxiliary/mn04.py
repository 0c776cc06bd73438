"""The pretrained EfficientAT mn04 as a trainable front-end of the auxiliary classifier.

The network (`encoders.efficientat.MobileNetV3Audio`, its AudioSet weights) is cut after its
feature layers: global average pooling gives 384 values and a trained linear head the clip
embedding. ``finetune`` says what trains: ``all`` (every layer), ``last`` (the last
``last_blocks`` feature layers and the head), ``lora`` (low-rank adapters of rank ``lora_rank``
on every 1x1 convolution, `lora.py`, and the head) or ``frozen`` (the head only). Frozen layers
stay in evaluation mode (their BatchNorm statistics are the pretrained ones) and get no
gradients. The 16 -> 32 kHz resampling runs in torch, on the device, with the filter of
scipy's ``resample_poly(x, 2, 1)`` (Kaiser-windowed FIR, 41 taps), so that training and
scoring share one path.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from ...encoders.efficientat import EfficientATMel, MobileNetV3Audio, calibrate_batchnorm
from .augment import spec_augment
from .lora import add_lora

FINETUNE_MODES = ("all", "last", "lora", "frozen")


class Upsample2(nn.Module):
    """(B, n) at 16 kHz -> (B, 2n) at 32 kHz, equal to ``scipy.signal.resample_poly(x, 2, 1)``."""

    taps: torch.Tensor  # a buffer (typed here: nn.Module's attribute lookup is untyped)

    half_len = 20  # scipy: 10 * max(up, down)

    def __init__(self) -> None:
        super().__init__()
        taps = scipy.signal.firwin(2 * self.half_len + 1, 0.5, window=("kaiser", 5.0)) * 2
        self.register_buffer(
            "taps",
            torch.from_numpy(np.ascontiguousarray(taps[::-1], dtype=np.float32)),
            persistent=False,
        )

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        stuffed = torch.zeros(
            waves.shape[0], 2 * waves.shape[1], dtype=waves.dtype, device=waves.device
        )
        stuffed[:, ::2] = waves
        return F.conv1d(
            stuffed[:, None], self.taps[None, None].to(waves.dtype), padding=self.half_len
        )[:, 0]


class MN04Frontend(nn.Module):
    """Waveforms (B, samples) at 16 kHz -> embeddings (B, embedding_dim).

    ``state``: the pretrained state_dict to start from; None starts from random weights,
    whose BatchNorm statistics are calibrated on seeded noise when ``calibrate_seed`` is
    given (the ``random`` control; a reload skips it, the saved weights replace them).
    """

    def __init__(
        self,
        embedding_dim: int = 128,
        finetune: str = "last",
        last_blocks: int = 3,
        specaug: tuple[int, int, int] | None = None,
        state: dict[str, torch.Tensor] | None = None,
        calibrate_seed: int | None = None,
        lora_rank: int = 8,
    ) -> None:
        super().__init__()
        if finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {FINETUNE_MODES}, got {finetune!r}")
        net = MobileNetV3Audio()
        self.upsample, self.mel = Upsample2(), EfficientATMel()
        if state is not None:
            net.load_state_dict(state, strict=True)
        elif calibrate_seed is not None:
            calibrate_batchnorm(net, self.mel, calibrate_seed)
        self.features = net.features
        self.head = nn.Linear(net.embed_dim, embedding_dim)
        self.finetune, self.specaug = finetune, specaug
        n_trained = {"all": len(self.features), "last": min(last_blocks, len(self.features))}.get(
            finetune, 0
        )
        self.frozen = [m for m in list(self.features)[: len(self.features) - n_trained]]
        for module in self.frozen:
            module.requires_grad_(False)
        if (
            finetune == "lora"
        ):  # after freezing: the adapters are the features' only trained weights
            add_lora(self.features, lora_rank)

    def train(self, mode: bool = True) -> MN04Frontend:
        """Training mode for what trains; frozen layers keep their BatchNorm statistics."""
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(
        self, waves: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        with torch.autocast(waves.device.type, enabled=False):
            mel = self.mel(self.upsample(waves.float()))
        if self.training and self.specaug is not None:
            mel = spec_augment(mel, *self.specaug, generator=generator)
        return self.head(self.features(mel[:, None]).mean(dim=(2, 3)).float())
