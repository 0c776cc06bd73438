"""Outlier detectors on clip embeddings: KNN, LOF, GMM, SOS, Mahalanobis.

All share `TrainingSetDetector`: optional standardisation (StandardScaler fitted on the
training rows), neighbour counts clamped to ``n_train - 1`` for tiny sets, and persistence
by *refitting*: ``state()`` stores the training matrix (plus the scaler statistics, checked
on reload) and ``from_state`` fits again. Every fit here is deterministic (exact
neighbour search, fixed ``random_state`` for the GMM), so reloaded detectors give the
same scores as the saved ones; nothing is pickled.

SOS note: PyOD's ``SOS.decision_function(X)`` scores the rows of ``X`` against each other
only, not against the training data. `SOS` here scores a new point against the training
set (see its docstring); its training scores equal PyOD's ``decision_scores_``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.covariance import EmpiricalCovariance, LedoitWolf, ledoit_wolf_shrinkage
from sklearn.metrics import pairwise_distances
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import StandardScaler

from ..errors import CheckpointError, ConfigError
from .base import Detector


def _check(X: np.ndarray, dim: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or len(X) == 0:
        raise ValueError(f"expected a non-empty (n, d) matrix, got shape {X.shape}")
    if dim is not None and X.shape[1] != dim:
        raise ValueError(f"expected {dim} columns (as in training), got {X.shape[1]}")
    if not np.isfinite(X).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return X


class TrainingSetDetector(Detector):
    """Shared machinery; subclasses implement `_fit` / `_score` / `_train_scores` on
    (possibly standardised) rows and list their parameters in ``param_names``."""

    param_names: ClassVar[tuple[str, ...]] = ("standardize",)
    min_train: ClassVar[int] = 1

    def __init__(self, standardize: bool = True) -> None:
        self.standardize = standardize

    def get_params(self) -> dict[str, Any]:
        return {p: getattr(self, p) for p in self.param_names}

    def fit(self, X: np.ndarray) -> TrainingSetDetector:
        X = _check(X)
        if len(X) < self.min_train:
            raise ValueError(
                f"{self.name} needs at least {self.min_train} training rows, got {len(X)}"
            )
        self.train_ = X
        self.scaler_ = StandardScaler().fit(X) if self.standardize else None
        self._fit(self._transform(X))
        return self

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def score(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "train_"):
            raise RuntimeError(f"{self.name}: fit before scoring")
        return np.asarray(
            self._score(self._transform(_check(X, self.train_.shape[1]))), dtype=np.float64
        )

    def train_scores(self) -> np.ndarray:
        return np.asarray(self._train_scores(), dtype=np.float64)

    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _train_scores(self) -> np.ndarray:
        return self._score(self._transform(self.train_))

    def state(self) -> dict[str, np.ndarray]:
        state = {"train": self.train_}
        if self.scaler_ is not None:
            state["scaler_mean"], state["scaler_scale"] = self.scaler_.mean_, self.scaler_.scale_
        return state

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], **params: Any) -> TrainingSetDetector:
        det = cls(**params).fit(np.asarray(state["train"]))
        if (
            det.scaler_ is not None
            and "scaler_mean" in state
            and not (
                np.allclose(det.scaler_.mean_, state["scaler_mean"])
                and np.allclose(det.scaler_.scale_, state["scaler_scale"])
            )
        ):
            raise CheckpointError(
                f"{cls.name}: saved scaler statistics do not match the saved training rows"
            )
        return det


class KNN(TrainingSetDetector):
    """Distance to the k-th nearest training row ("largest") or mean of the k ("mean"); PyOD."""

    name = "knn"
    min_train = 2
    param_names = ("n_neighbors", "method", "standardize")

    def __init__(
        self, n_neighbors: int = 2, method: str = "largest", standardize: bool = True
    ) -> None:
        super().__init__(standardize)
        if method not in ("largest", "mean", "median"):
            raise ConfigError(f"knn method must be largest, mean or median, got {method!r}")
        self.n_neighbors, self.method = n_neighbors, method

    def _fit(self, X: np.ndarray) -> None:
        from pyod.models.knn import KNN as PyodKNN

        self.k_ = max(1, min(self.n_neighbors, len(X) - 1))
        self.model_ = PyodKNN(n_neighbors=self.k_, method=self.method).fit(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(X)

    def _train_scores(self) -> np.ndarray:
        return self.model_.decision_scores_  # each training row's neighbours exclude itself


class LOF(TrainingSetDetector):
    """Local outlier factor (scikit-learn, novelty mode); score = -score_samples."""

    name = "lof"
    min_train = 2
    param_names = ("n_neighbors", "standardize")

    def __init__(self, n_neighbors: int = 20, standardize: bool = True) -> None:
        super().__init__(standardize)
        self.n_neighbors = n_neighbors

    def _fit(self, X: np.ndarray) -> None:
        self.k_ = max(1, min(self.n_neighbors, len(X) - 1))
        self.model_ = LocalOutlierFactor(n_neighbors=self.k_, novelty=True, algorithm="brute").fit(
            X
        )

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)

    def _train_scores(self) -> np.ndarray:
        return -self.model_.negative_outlier_factor_


class GMM(TrainingSetDetector):
    """Gaussian mixture (scikit-learn, fixed random_state); score = -log-likelihood."""

    name = "gmm"
    param_names = ("n_components", "covariance_type", "reg_covar", "seed", "standardize")

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "diag",
        reg_covar: float = 1e-3,
        seed: int = 0,
        standardize: bool = True,
    ) -> None:
        super().__init__(standardize)
        self.n_components, self.covariance_type = n_components, covariance_type
        self.reg_covar, self.seed = reg_covar, seed

    def _fit(self, X: np.ndarray) -> None:
        self.model_ = GaussianMixture(
            n_components=max(1, min(self.n_components, len(X))),
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            random_state=self.seed,
        ).fit(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)


class Mahalanobis(TrainingSetDetector):
    """Squared Mahalanobis distance to the training mean; Ledoit-Wolf shrinkage by default
    (embeddings usually have more dimensions than training clips)."""

    name = "mahalanobis"
    min_train = 2
    param_names = ("shrinkage", "standardize")

    def __init__(self, shrinkage: bool = True, standardize: bool = True) -> None:
        super().__init__(standardize)
        self.shrinkage = shrinkage

    def _fit(self, X: np.ndarray) -> None:
        if self.shrinkage and len(X) < X.shape[1]:
            self.model_ = _WoodburyLedoitWolf(X)
        else:
            self.model_ = (LedoitWolf() if self.shrinkage else EmpiricalCovariance()).fit(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.model_.mahalanobis(X)


class _WoodburyLedoitWolf:
    """scikit-learn's Ledoit-Wolf estimate, its precision found by the Woodbury identity when
    there are fewer rows n than dimensions D: the shrunk covariance ``(1 - a) S + a mu I`` is a
    scaled identity plus a rank-n term, so its inverse needs an n x n solve instead of the D x D
    eigendecomposition `LedoitWolf` runs (640 features, 10-100 clips: milliseconds, not a second).
    Same shrinkage ``a`` (`ledoit_wolf_shrinkage`), same location, same distances."""

    def __init__(self, X: np.ndarray) -> None:
        n, d = X.shape
        self.location_ = X.mean(axis=0)
        centred = X - self.location_
        shrinkage = float(ledoit_wolf_shrinkage(centred, assume_centered=True))
        mu = float(np.sum(centred**2) / (n * d))  # trace of the empirical covariance / D
        ridge = shrinkage * mu
        if ridge <= 0:  # constant features only, or no shrinkage: the general inverse
            self._precision = np.linalg.pinv(np.cov(centred, rowvar=False, bias=True))
            return
        inner = (
            (ridge * n / (1.0 - shrinkage)) * np.eye(n) + centred @ centred.T
            if shrinkage < 1
            else None
        )
        eye = np.eye(d)
        self._precision = (
            eye if inner is None else eye - centred.T @ np.linalg.solve(inner, centred)
        ) / ridge

    def get_precision(self) -> np.ndarray:
        return self._precision

    def mahalanobis(self, X: np.ndarray) -> np.ndarray:
        centred = np.asarray(X, dtype=np.float64) - self.location_
        return np.einsum("ij,jk,ik->i", centred, self._precision, centred)


class SOS(TrainingSetDetector):
    """Stochastic outlier selection (Janssens et al. 2012) with training-set references.

    Fit: per training row j a Gaussian affinity ``a_jk = exp(-d_jk * beta_j)`` on Euclidean
    distances, ``beta_j`` found by binary search so that its perplexity equals
    ``perplexity`` (as PyOD). A new point x joins the set with the betas fixed: row j binds
    to x with probability ``a_jx / (S_j + a_jx)`` (``S_j`` = row sum over training rows) and
    x's outlier probability is ``prod_j (1 - b_jx)``.
    """

    name = "sos"
    min_train = 2
    param_names = ("perplexity", "standardize")

    def __init__(self, perplexity: float = 4.5, standardize: bool = True) -> None:
        super().__init__(standardize)
        self.perplexity = perplexity

    def _fit(self, X: np.ndarray) -> None:
        D = pairwise_distances(X, metric="euclidean")
        n = len(X)
        perplexity = min(self.perplexity, n - 1 - 1e-6) if n > 2 else 1.0
        self.beta_ = np.array([_perplexity_beta(np.delete(D[i], i), perplexity) for i in range(n)])
        A = np.exp(-D * self.beta_[:, None])
        np.fill_diagonal(A, 0.0)
        self.row_sums_ = A.sum(axis=1)
        B = A / self.row_sums_[:, None]
        self.train_scores_ = np.exp(np.log1p(-np.clip(B, 0.0, 1.0 - 1e-15)).sum(axis=0))
        self.X_ = X

    def _score(self, X: np.ndarray) -> np.ndarray:
        a = np.exp(
            -pairwise_distances(self.X_, X, metric="euclidean") * self.beta_[:, None]
        )  # (n_train, n)
        b = a / (self.row_sums_[:, None] + a)
        return np.exp(np.log1p(-np.clip(b, 0.0, 1.0 - 1e-15)).sum(axis=0))

    def _train_scores(self) -> np.ndarray:
        return self.train_scores_


def _perplexity_beta(
    distances: np.ndarray, perplexity: float, tol: float = 1e-5, max_tries: int = 5000
) -> float:
    """Precision beta with entropy of softmax(-d * beta) equal to log(perplexity) (PyOD's
    search)."""
    log_u = np.log(perplexity)
    beta, lo, hi = 1.0, -np.inf, np.inf
    for _ in range(max_tries):
        a = np.exp(-distances * beta)
        total = a.sum()
        if total == 0.0 or not np.isfinite(total):
            h_diff = np.nan
        else:
            h = np.log(total) + beta * np.sum(distances * a) / total
            h_diff = h - log_u
        if np.isfinite(h_diff) and abs(h_diff) <= tol:
            break
        if np.isnan(h_diff):
            beta /= 10.0
        elif h_diff > 0:
            lo = beta
            beta = beta * 2.0 if np.isinf(hi) else (beta + hi) / 2.0
        else:
            hi = beta
            beta = beta / 2.0 if np.isinf(lo) else (beta + lo) / 2.0
    return float(beta)


DETECTORS: dict[str, type[TrainingSetDetector]] = {
    c.name: c for c in (KNN, LOF, GMM, SOS, Mahalanobis)
}
