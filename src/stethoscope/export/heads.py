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

from ..detectors.embedding import GMM, KNN, LOF, SOS, Mahalanobis, TrainingSetDetector
from ..encoders.efficientat import EfficientATEncoder
from ..errors import ConfigError


def _f64(array: Any) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float64))


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


def _pairwise(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (B, n_train) in float64."""
    return (x[:, None, :] - train[None]).pow(2).sum(dim=2).sqrt()


class DetectorHead(nn.Module):
    """A fitted `TrainingSetDetector`'s ``score`` on float64 rows (its scaler included)."""

    def __init__(self, det: TrainingSetDetector) -> None:
        super().__init__()
        self.kind = det.name
        scaler = det.scaler_
        self.register_buffer("shift", _f64(scaler.mean_ if scaler is not None else np.zeros(det.train_.shape[1])))
        self.register_buffer("scale", _f64(scaler.scale_ if scaler is not None else np.ones(det.train_.shape[1])))
        model = det.model_ if hasattr(det, "model_") else None
        if isinstance(det, KNN):
            self.k, self.method = det.k_, det.method
            self.register_buffer("rows", _f64(det._transform(det.train_)))
        elif isinstance(det, LOF):  # sklearn's fitted state: k-distances and densities of the training rows
            self.k = model.n_neighbors_
            self.register_buffer("rows", _f64(det._transform(det.train_)))
            self.register_buffer("kdist", _f64(model._distances_fit_X_[:, self.k - 1]))
            self.register_buffer("lrd", _f64(model._lrd))
        elif isinstance(det, GMM):
            if model.covariance_type != "diag":
                raise ConfigError(f"gmm with covariance_type {model.covariance_type!r} cannot be exported (diag only)")
            prec_chol = np.asarray(model.precisions_cholesky_, np.float64)
            precisions = prec_chol ** 2
            self.register_buffer("const", _f64(np.sum(model.means_ ** 2 * precisions, axis=1)))
            self.register_buffer("cross", _f64((model.means_ * precisions).T))
            self.register_buffer("precisions", _f64(precisions.T))
            self.register_buffer("bias", _f64(np.sum(np.log(prec_chol), axis=1) + np.log(model.weights_)
                                              - 0.5 * model.means_.shape[1] * np.log(2 * np.pi)))
        elif isinstance(det, SOS):
            self.register_buffer("rows", _f64(det.X_))
            self.register_buffer("beta", _f64(det.beta_))
            self.register_buffer("row_sums", _f64(det.row_sums_))
        elif isinstance(det, Mahalanobis):
            self.register_buffer("location", _f64(model.location_))
            self.register_buffer("precision", _f64(model.get_precision()))
        else:
            raise ConfigError(f"detector {det.name!r} cannot be exported to ONNX")

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        x = (rows - self.shift) / self.scale
        if self.kind == "knn":
            near = torch.topk(_pairwise(x, self.rows), self.k, dim=1, largest=False).values  # ascending
            if self.method == "largest":
                return near[:, -1]
            if self.method == "mean":
                return near.mean(dim=1)
            return 0.5 * (near[:, (self.k - 1) // 2] + near[:, self.k // 2])  # numpy's median
        if self.kind == "lof":
            dist, idx = torch.topk(_pairwise(x, self.rows), self.k, dim=1, largest=False)
            reach = torch.maximum(dist, self.kdist[idx])
            own = 1.0 / (reach.mean(dim=1) + 1e-10)
            return (self.lrd[idx] / own[:, None]).mean(dim=1)
        if self.kind == "gmm":
            # sklearn's expansion of the diagonal Gaussian log-density, then logsumexp
            quad = self.const - 2.0 * (x @ self.cross) + x.pow(2) @ self.precisions
            return -torch.logsumexp(self.bias - 0.5 * quad, dim=1)
        if self.kind == "sos":
            a = torch.exp(-_pairwise(x, self.rows).T * self.beta[:, None])  # (n_train, B)
            b = a / (self.row_sums[:, None] + a)
            return torch.exp(torch.log1p(-b.clamp(0.0, 1.0 - 1e-15)).sum(dim=0))
        centred = x - self.location
        return ((centred @ self.precision) * centred).sum(dim=1)


class EmbeddingHead(nn.Module):
    """`EmbeddingKNNSystem`: encoder embedding (float32) -> detector score (float64)."""

    def __init__(self, system: Any, encoder: Any) -> None:
        super().__init__()
        self.encoder = EncoderHead(encoder)
        self.detector = DetectorHead(system.detector_)

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
        self.detectors = nn.ModuleDict({n: DetectorHead(system.detectors_[n]) for n in self.names if n != RECON})
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
