"""A fitted detector's ``score`` as a torch module (float64), for systems that score in torch
and for ONNX export: the learned state is held as buffers, so the module is self-contained."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .embedding import GMM, KNN, LOF, SOS, Mahalanobis, TrainingSetDetector


def f64(array: Any) -> torch.Tensor:
    """A float64 tensor copy of ``array``."""
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float64))


def _pairwise(x: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (B, n_train) in float64."""
    return (x[:, None, :] - train[None]).pow(2).sum(dim=2).sqrt()


class DetectorModule(nn.Module):
    """A fitted `TrainingSetDetector`'s ``score`` on float64 rows (its scaler included)."""

    # the buffers each detector registers (typed here: nn.Module's attribute lookup is untyped)
    shift: torch.Tensor
    scale: torch.Tensor
    rows: torch.Tensor
    kdist: torch.Tensor
    lrd: torch.Tensor
    const: torch.Tensor
    cross: torch.Tensor
    precisions: torch.Tensor
    bias: torch.Tensor
    beta: torch.Tensor
    row_sums: torch.Tensor
    location: torch.Tensor
    precision: torch.Tensor
    k: int
    method: str

    def __init__(self, det: TrainingSetDetector) -> None:
        super().__init__()
        self.kind = det.name
        scaler = det.scaler_
        self.register_buffer(
            "shift", f64(scaler.mean_ if scaler is not None else np.zeros(det.train_.shape[1]))
        )
        self.register_buffer(
            "scale", f64(scaler.scale_ if scaler is not None else np.ones(det.train_.shape[1]))
        )
        if isinstance(det, KNN):
            self.k, self.method = det.k_, det.method
            self.register_buffer("rows", f64(det._transform(det.train_)))
        elif isinstance(
            det, LOF
        ):  # sklearn's fitted state: k-distances and densities of the training rows
            model = det.model_
            self.k = model.n_neighbors_
            self.register_buffer("rows", f64(det._transform(det.train_)))
            self.register_buffer("kdist", f64(model._distances_fit_X_[:, self.k - 1]))
            self.register_buffer("lrd", f64(model._lrd))
        elif isinstance(det, GMM):
            model = det.model_
            if model.covariance_type != "diag":
                raise ConfigError(
                    f"gmm with covariance_type {model.covariance_type!r} cannot be "
                    "exported (diag only)"
                )
            prec_chol = np.asarray(model.precisions_cholesky_, np.float64)
            precisions = prec_chol**2
            self.register_buffer("const", f64(np.sum(model.means_**2 * precisions, axis=1)))
            self.register_buffer("cross", f64((model.means_ * precisions).T))
            self.register_buffer("precisions", f64(precisions.T))
            self.register_buffer(
                "bias",
                f64(
                    np.sum(np.log(prec_chol), axis=1)
                    + np.log(model.weights_)
                    - 0.5 * model.means_.shape[1] * np.log(2 * np.pi)
                ),
            )
        elif isinstance(det, SOS):
            self.register_buffer("rows", f64(det.X_))
            self.register_buffer("beta", f64(det.beta_))
            self.register_buffer("row_sums", f64(det.row_sums_))
        elif isinstance(det, Mahalanobis):
            self.register_buffer("location", f64(det.model_.location_))
            self.register_buffer("precision", f64(det.model_.get_precision()))
        else:
            raise ConfigError(f"detector {det.name!r} cannot be exported to ONNX")

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        x = (rows - self.shift) / self.scale
        if self.kind == "knn":
            near = torch.topk(
                _pairwise(x, self.rows), self.k, dim=1, largest=False
            ).values  # ascending
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
