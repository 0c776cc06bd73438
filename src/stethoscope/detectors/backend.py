"""Back-ends that turn clip embeddings into anomaly scores, per domain.

``knn`` (the field's choice, e.g. ASDKit and Wilkinghoff 2024): L2-normalised embeddings,
one neighbour bank per domain (and per section with ``per_section``), the score is the mean
cosine distance to the ``n_neighbors`` nearest rows of a bank, and the smallest over the
banks (min over source and target). With ``smote`` the few target-domain embeddings of a
bank are oversampled by imbalanced-learn's SMOTE against the source rows (synthetic points on
segments between target neighbours; ``k_neighbors`` capped at ``n_target - 1``, ratio
``smote_ratio`` of the source count); with fewer than two target rows there is nothing to
interpolate and the bank keeps its real rows.

``centres``: the cosine distance to the closest learned class centre (every sub-cluster
centre of the machine type's classes), restricted to the clip's section with ``per_section``.
``gmm``: a Gaussian mixture per bank (the project's `detectors.GMM`, diagonal covariances),
score = the smallest negative log-likelihood over the banks; a domain with a single
training clip joins the other domain's bank (a mixture needs two rows).

A clip whose section is unknown (in-memory waveforms) or has no bank of its own is scored
against every bank. Nothing is pickled: `state` gives arrays and `index` JSON, and
`from_state` rebuilds the same back-end (exact neighbour search, seeded GMMs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from imblearn.over_sampling import SMOTE
from sklearn.neighbors import NearestNeighbors

from ..errors import ConfigError
from .embedding import GMM

BACKENDS = ("knn", "centres", "gmm")
ALL = "*"


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Bank:
    """Rows of one (section or ``*``, domain): the real embeddings first, then synthetic ones."""

    group: str
    domain: str
    rows: np.ndarray
    n_real: int
    model: Any = None

    def meta(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "domain": self.domain,
            "n_real": self.n_real,
            "n_rows": len(self.rows),
        }


class EmbeddingBackend:
    """Fit on a machine type's training embeddings with their sections and domains."""

    def __init__(
        self,
        kind: str = "knn",
        n_neighbors: int = 1,
        smote: bool = True,
        smote_ratio: float = 1.0,
        per_section: bool = False,
        gmm_components: int = 1,
        seed: int = 0,
    ) -> None:
        if kind not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {kind!r}")
        self.kind, self.n_neighbors, self.smote, self.smote_ratio = (
            kind,
            n_neighbors,
            smote,
            smote_ratio,
        )
        self.per_section, self.gmm_components, self.seed = per_section, gmm_components, seed
        self.banks: list[Bank] = []
        self.centres: np.ndarray | None = None
        self.centre_sections: list[str] = []
        self._fit_rows: tuple[np.ndarray, list[str], list[str]] | None = None

    # -- fitting ------------------------------------------------------------------------
    def fit(
        self,
        embeddings: np.ndarray,
        sections: Sequence[str],
        domains: Sequence[str | None],
        centres: np.ndarray | None = None,
        centre_sections: Sequence[str] = (),
    ) -> EmbeddingBackend:
        """``centres`` (n, d) and their sections are needed by the ``centres`` kind only."""
        X = l2_normalise(embeddings)
        doms = [d or "source" for d in domains]
        groups = [s if self.per_section else ALL for s in sections]
        self._fit_rows = (X, groups, doms)
        self.banks = []
        if self.kind == "centres":
            if centres is None:
                raise ValueError("the centres back-end needs the class centres")
            self.centres, self.centre_sections = l2_normalise(centres), list(centre_sections)
            return self
        for group in sorted(set(groups)):
            rows = {
                d: X[[i for i in range(len(X)) if groups[i] == group and doms[i] == d]]
                for d in ("source", "target")
            }
            if self.kind == "gmm":
                rows = self._gmm_rows(rows, group)
            for domain in ("source", "target"):
                real = rows[domain]
                if not len(real):
                    continue
                bank_rows = self._oversample(rows["source"], real) if domain == "target" else real
                self.banks.append(self._build(Bank(group, domain, bank_rows, len(real))))
        return self

    @staticmethod
    def _gmm_rows(rows: dict[str, np.ndarray], group: str) -> dict[str, np.ndarray]:
        """A Gaussian mixture needs two rows: a domain with one joins the other domain's bank."""
        for small, other in (("target", "source"), ("source", "target")):
            if len(rows[small]) == 1 and len(rows[other]):
                rows = {other: np.vstack([rows[other], rows[small]]), small: rows[small][:0]}
        if sum(len(r) for r in rows.values()) < 2:
            where, fix = (
                ("machine type", "")
                if group == ALL
                else (f"section ({group})", "set per_section false, ")
            )
            raise ConfigError(
                f"the gmm back-end needs at least 2 training clips per {where}; "
                f"{fix}or use backend knn or centres"
            )
        return rows

    def _oversample(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Target rows plus SMOTE's synthetic ones (only where SMOTE can and should add any)."""
        n_s, n_t = len(source), len(target)
        if (
            self.kind != "knn"
            or not self.smote
            or n_t < 2
            or n_s == 0
            or n_t >= self.smote_ratio * n_s
        ):
            return target
        sampler = SMOTE(
            sampling_strategy=self.smote_ratio, k_neighbors=min(5, n_t - 1), random_state=self.seed
        )
        X, y = sampler.fit_resample(
            np.vstack([source, target]), np.r_[np.zeros(n_s, int), np.ones(n_t, int)]
        )
        synthetic = X[n_s + n_t :][y[n_s + n_t :] == 1]  # imbalanced-learn appends the new rows
        return np.vstack([target, l2_normalise(synthetic)])

    def _build(self, bank: Bank) -> Bank:
        if self.kind == "knn":
            bank.model = NearestNeighbors(metric="cosine", algorithm="brute").fit(bank.rows)
        else:
            bank.model = GMM(
                n_components=self.gmm_components,
                covariance_type="diag",
                seed=self.seed,
                standardize=False,
            ).fit(bank.rows)
        return bank

    # -- scoring ------------------------------------------------------------------------
    def _bank_scores(
        self, bank: Bank, X: np.ndarray, exclude: np.ndarray | None = None
    ) -> np.ndarray:
        """Score of every row of X against one bank; ``exclude[i]`` = a bank row that row i
        must not count as its own neighbour (-1: none; leave-one-out training scores)."""
        if self.kind == "gmm":
            return bank.model.score(X)
        k = min(self.n_neighbors, len(bank.rows))
        if exclude is None or not (exclude >= 0).any():
            return bank.model.kneighbors(X, n_neighbors=k)[0].mean(axis=1)
        dist, idx = bank.model.kneighbors(X, n_neighbors=min(k + 1, len(bank.rows)))
        out = np.empty(len(X))
        for i in range(len(X)):
            others = dist[i][idx[i] != exclude[i]]
            kk = k if exclude[i] < 0 else min(k, len(bank.rows) - 1)
            out[i] = others[:kk].mean() if kk > 0 else np.inf
        return out

    def score(
        self, embeddings: np.ndarray, sections: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Anomaly score per embedding (higher = more anomalous)."""
        X = l2_normalise(embeddings)
        secs = list(sections) if sections is not None else [None] * len(X)
        if self.kind == "centres":
            assert self.centres is not None
            sims = X @ self.centres.T
            allowed = self._allowed(self.centre_sections, secs)
            return 1.0 - np.where(allowed, sims, -np.inf).max(axis=1)
        scores = np.stack([self._bank_scores(b, X) for b in self.banks], axis=1)
        return np.where(self._allowed([b.group for b in self.banks], secs), scores, np.inf).min(
            axis=1
        )

    def _allowed(self, owners: Sequence[str], sections: Sequence[str | None]) -> np.ndarray:
        """(n, len(owners)): which banks / centres each row is scored against."""
        owners_arr = np.asarray(owners, dtype=object)
        known = set(owners)
        rows = []
        for s in sections:
            if not self.per_section or s is None or s not in known:
                rows.append(np.ones(len(owners), bool))
            else:
                rows.append(owners_arr == s)
        return np.array(rows).reshape(len(sections), len(owners))

    def train_scores(self) -> np.ndarray:
        """In-sample scores of the fitted rows; kNN leaves each row out of its own bank
        (synthetic SMOTE rows derived from it stay, so target rows score a little low). With
        ``per_section``, a row alone in its section is scored against every bank."""
        assert self._fit_rows is not None, "fit the back-end first"
        X, groups, doms = self._fit_rows
        if self.kind != "knn":
            return self.score(X, [g if g != ALL else None for g in groups])
        cols = []
        for bank in self.banks:
            members = [
                i for i in range(len(X)) if groups[i] == bank.group and doms[i] == bank.domain
            ]
            exclude = np.full(len(X), -1)
            exclude[members] = np.arange(len(members))
            cols.append(self._bank_scores(bank, X, exclude))
        scores = np.stack(cols, axis=1)
        own = np.array([[b.group == g or b.group == ALL for b in self.banks] for g in groups])
        best = np.where(own, scores, np.inf).min(axis=1)
        # a row alone in its section's banks has no neighbour there: score it against every bank,
        # as a clip of a section without a bank is scored
        return np.where(np.isfinite(best), best, scores.min(axis=1))

    # -- persistence --------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        if self.kind == "centres":
            return {"centres": np.asarray(self.centres)}
        return {f"bank{i}": b.rows for i, b in enumerate(self.banks)}

    def index(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "banks": [b.meta() for b in self.banks],
            "centre_sections": self.centre_sections,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, np.ndarray], index: dict[str, Any], **params: Any
    ) -> EmbeddingBackend:
        backend = cls(**params)
        if backend.kind == "centres":
            backend.centres, backend.centre_sections = (
                np.asarray(state["centres"]),
                list(index["centre_sections"]),
            )
            return backend
        backend.banks = [
            backend._build(
                Bank(
                    m["group"],
                    m["domain"],
                    np.asarray(state[f"bank{i}"], np.float64),
                    int(m["n_real"]),
                )
            )
            for i, m in enumerate(index["banks"])
        ]
        return backend
