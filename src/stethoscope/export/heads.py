"""Scoring networks as plain torch modules for ONNX export: front-end features in, score out.

Each module reproduces its system's scoring path (`score_decoded`, `explain_decoded`) on a
batch of equal-length clips, with the learned state baked in as buffers, in the same
precision as the torch path: float32 networks, float64 where the system reduces in float64
(frame-reconstruction scores, Mahalanobis, the embedding detectors). Inputs are the
front ends' outputs (`frontends`): ``logmel`` (B, n_mels, frames) and/or ``mn04_mel``
(B, 128, frames'). Outputs are ``score`` (B,) float64 and, for systems with an anomaly map,
``anomaly_map`` (B, n_mels, frames) float32, equal to `Explanation.anomaly_map`.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..detectors.module import DetectorModule, f64 as _f64
from ..encoders.efficientat import EfficientATEncoder
from ..errors import ConfigError


class FrameReconHead(nn.Module):
    """`FrameReconstructionSystem`: 5-frame vectors, reconstruction, MSE or MAHALA score,
    and the squared residual averaged over the vectors covering each (mel, frame)."""

    def __init__(self, system: Any) -> None:
        super().__init__()
        self.system_name, self.n, self.mode = system.name, system.n_frames, system.score_mode
        self.net = copy.deepcopy(system.model).eval()
        self.latent = getattr(system, "score_latent", None)
        if self.mode == "mahala":
            self.register_buffer("precision_source", system.precision_source_.double().clone())
            self.register_buffer("precision_target", system.precision_target_.double().clone())

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.reconstruct(x) if self.latent is None else self.net.reconstruct(x, latent=self.latent)

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, m, t = logmel.shape
        n = self.n
        v = t - n + 1
        stacked = torch.stack([logmel[:, :, k:k + v] for k in range(n)], dim=2)  # (B, M, n, V)
        x = stacked.permute(0, 3, 2, 1).reshape(b * v, n * m)  # vector i = frames i..i+n-1, as stack_frames
        diff = x - self._reconstruct(x)
        d64 = diff.double().reshape(b, v, n * m)
        if self.mode == "mse":
            score = d64.pow(2).mean(dim=2).mean(dim=1)
        else:
            mean = d64.mean(dim=1)
            source = ((mean @ self.precision_source) * mean).sum(dim=1)
            target = ((mean @ self.precision_target) * mean).sum(dim=1)
            score = torch.minimum(source, target)
        err = diff.pow(2).reshape(b, v, n, m)
        total = sum(F.pad(err[:, :, k], (0, 0, k, n - 1 - k)) for k in range(n))  # (B, T, M)
        ones = torch.ones_like(err[:, :, 0, :1])
        hits = sum(F.pad(ones, (0, 0, k, n - 1 - k)) for k in range(n))
        return score, (total / hits).transpose(1, 2)


class LDGANHead(nn.Module):
    """`MelBranch.evaluate` of clips of ``frames`` frames, with the fixed scoring noise of that
    length baked in: (score float64, map in dB^2, attention-pooled mel embedding)."""

    def __init__(self, branch: Any, frames: int | None, embedding: bool = True) -> None:
        super().__init__()
        self.embedding = embedding
        self.model = copy.deepcopy(branch.model).eval()
        self.register_buffer("mean", branch.mel_mean_.float().clone())
        self.register_buffer("std", branch.mel_std_.float().clone())
        cfg = self.model.cfg
        self.diffused = cfg.score_step > 0 and cfg.latent_diffusion
        self.n_draws = branch.hp["score_draws"] if self.diffused else 0
        if self.diffused:
            if frames is None:
                raise ConfigError("ldgan scores with fixed noise per clip length: the export needs a clip length")
            for d in range(self.n_draws):
                for k, z in enumerate(branch._noises(frames, d)):
                    self.register_buffer(f"noise_{d}_{k}", z.clone())

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = logmel.shape[0]
        x = (logmel - self.mean[:, None]) / self.std[:, None]
        steps = self.model.cfg.score_step + 1
        draws = [[getattr(self, f"noise_{d}_{k}")[None].expand(b, -1, -1) for k in range(steps)]
                 for d in range(self.n_draws)]
        out = self.model.evaluate(x, draws)
        amap = out.anomaly_map * self.std[:, None] ** 2
        return (out.score.double(), amap, out.embedding) if self.embedding else (out.score.double(), amap)


class EncoderHead(nn.Module):
    """EfficientAT mn04 on its front end's mel: the pooled (or hidden-layer) clip embedding."""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        if not isinstance(encoder, EfficientATEncoder):
            raise ConfigError(f"encoder {encoder.name!r} cannot be exported to ONNX; supported: the EfficientAT "
                              f"mn04 encoders (efficientat_mn04, efficientat_mn04_hidden, random)")
        self.net = copy.deepcopy(encoder.model).eval()
        self.hidden = encoder.layer == "hidden"

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        out = self.net(mel[:, None])
        return out.hidden if self.hidden else out.embedding


class EmbeddingHead(nn.Module):
    """`EmbeddingKNNSystem`: encoder embedding (float32) -> detector score (float64)."""

    def __init__(self, system: Any, encoder: Any) -> None:
        super().__init__()
        self.encoder = EncoderHead(encoder)
        self.detector = DetectorModule(system.detector_)

    def forward(self, mn04_mel: torch.Tensor) -> torch.Tensor:
        return self.detector(self.encoder(mn04_mel).double())


class TLDiffGANHead(nn.Module):
    """`TLDiffGANSystem`: LDGAN branch (+ waveform encoder), fusion, the chosen candidate or
    the ensemble of kernel-smoothed CDF positions; the LDGAN branch's anomaly map."""

    def __init__(self, system: Any, frames: int | None, encoder: Any | None) -> None:
        super().__init__()
        from ..systems.tldiffgan import ENSEMBLE, RECON, _logistic_scale

        self.mel = LDGANHead(system.branch, frames)
        self.encoder = EncoderHead(encoder) if encoder is not None else None
        chosen = system.selection_["chosen"]
        self.names = list(system.candidates) if chosen == ENSEMBLE else [chosen]
        self.ensemble, self.recon = chosen == ENSEMBLE, RECON
        dims = {k: int(m.shape[0]) for k, (m, _) in system.scalers_.items()}
        for key, (mean, scale) in system.scalers_.items():
            weight = math.sqrt(sum(dims.values()) / (len(dims) * dims[key])) if system.balance_branches else 1.0
            self.register_buffer(f"{key}_mean", _f64(mean))
            self.register_buffer(f"{key}_factor", _f64(weight / np.asarray(scale, np.float64)))
        self.detectors = nn.ModuleDict({n: DetectorModule(system.detectors_[n]) for n in self.names if n != RECON})
        for n in self.names if self.ensemble else []:
            self.register_buffer(f"ref_{n}", _f64(system.reference_[n]))
            self.register_buffer(f"ref_scale_{n}", _f64(_logistic_scale(system.reference_[n])))

    def forward(self, logmel: torch.Tensor, mn04_mel: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        recon, amap, mel_emb = self.mel(logmel)
        parts = [(mel_emb.double() - self.mel_mean) * self.mel_factor]
        if self.encoder is not None:
            parts.append((self.encoder(mn04_mel).double() - self.wave_mean) * self.wave_factor)
        joint = torch.cat(parts, dim=1)
        scores = {n: recon if n == self.recon else self.detectors[n](joint) for n in self.names}
        if not self.ensemble:
            return scores[self.names[0]], amap
        cdfs = []
        for n, s in scores.items():
            z = (s[:, None] - getattr(self, f"ref_{n}")[None]) / getattr(self, f"ref_scale_{n}")
            cdfs.append((0.5 * (1.0 + torch.tanh(0.5 * z))).mean(dim=1))
        return torch.stack(cdfs).mean(dim=0), amap
