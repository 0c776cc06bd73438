"""TLDiffGAN: LDGAN mel branch + frozen waveform encoder, fused embeddings, selected detector.

Per machine type (one system each):

1. The LDGAN mel branch (`LDGANSystem`, every LDGAN parameter is a parameter of this system
   under the same name) gives a reconstruction error per clip and an attention-pooled
   ``mel_embedding``.
2. A frozen waveform encoder (``encoder``: EfficientAT mn04 by default) gives a
   ``wave_embedding``; ``use_wave_branch=False`` drops it (ablation "without EAT").
3. Fusion: each branch is standardised per dimension (training mean / std, saved as tensors)
   and scaled so that both branches carry half of the joint space's total variance
   (``balance_branches``), then concatenated.
4. Candidates: the embedding detectors (KNN, LOF, GMM, SOS by default) on the joint space
   and the reconstruction error ("recon"). Every training clip gets a *held-out* score from
   each detector by cross-fitting (folds of ``holdout_fraction`` of the normals, detectors
   fitted on the rest); the detectors are then refitted on all training clips.
5. Selection (``selection``): "validation" picks the candidate with the best AUC on labelled
   validation clips when `fit` gets them and falls back to the ensemble otherwise;
   "ensemble" always averages the candidates' positions in their held-out score
   distributions (a kernel-smoothed empirical CDF); a candidate name fixes it.
6. Threshold: DCASE gamma fit on the chosen scorer's held-out training scores.

The rules are written out in docs/tldiffgan.md ("TLDiffGAN system").
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..data.clip import Clip
from ..detectors.embedding import DETECTORS, TrainingSetDetector
from ..encoders import embed_clips, encoder_tag, get_fitted_encoder
from ..encoders.base import Encoder
from ..errors import CheckpointError, ConfigError
from ..utils import seed_everything
from .base import System, gamma_threshold, register
from .ldgan import LDGANSystem

RECON = "recon"
SELECTION_RULES = ("validation", "ensemble")
ENSEMBLE = "ensemble"


@register
class TLDiffGANSystem(System):
    """Dual-branch TLDiffGAN: LDGAN reconstruction + mel/wave joint embeddings + detector bank."""

    name = "tldiffgan"
    description = "TLDiffGAN: LDGAN mel branch + frozen waveform encoder, fused, detector selected per machine"

    def __init__(self, *, encoder: str = "efficientat_mn04", weights_path: str | None = None,
                 use_wave_branch: bool = True, balance_branches: bool = True,
                 detectors: Sequence[str] = ("knn", "lof", "gmm", "sos"), n_neighbors: int = 2,
                 selection: str = "validation", holdout_fraction: float = 0.2,
                 seed: int = 0, device: str = "cpu", progress: bool = True, cache_dir: str | None = None,
                 checkpoint_dir: str | None = None, **ldgan: Any) -> None:
        detectors = list(detectors)
        unknown = [d for d in detectors if d not in DETECTORS]
        if unknown or not detectors or len(set(detectors)) != len(detectors):
            raise ConfigError(f"tldiffgan: detectors must be distinct names from {list(DETECTORS)}, got {detectors}")
        allowed = (*SELECTION_RULES, RECON, *detectors)
        if selection not in allowed:
            raise ConfigError(f"tldiffgan: selection must be one of {list(allowed)}, got {selection!r}")
        if not 0.0 < holdout_fraction <= 0.5:
            raise ConfigError(f"tldiffgan: holdout_fraction must be in (0, 0.5], got {holdout_fraction}")
        self.encoder, self.weights_path = encoder, weights_path
        self.use_wave_branch, self.balance_branches = use_wave_branch, balance_branches
        self.detectors, self.n_neighbors = detectors, n_neighbors
        self.selection, self.holdout_fraction = selection, holdout_fraction
        self.seed, self.device, self.progress = seed, device, progress
        self.cache_dir, self.checkpoint_dir = cache_dir, checkpoint_dir
        try:
            self.mel_branch = LDGANSystem(seed=seed, device=device, progress=progress, cache_dir=cache_dir,
                                          checkpoint_dir=checkpoint_dir, **ldgan)
        except TypeError as err:
            raise ConfigError(f"tldiffgan: {err}; parameters: {self.param_names()}") from err
        self._encoder: Encoder | None = None
        self.encoder_tag_: dict[str, Any] | None = None
        self.scalers_: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # branch -> (mean, scale)
        self.joint_train_: np.ndarray | None = None
        self.detectors_: dict[str, TrainingSetDetector] = {}
        self.reference_: dict[str, np.ndarray] = {}  # candidate -> held-out scores of the training clips
        self.selection_: dict[str, Any] = {}

    # -- parameters: own ones plus every LDGAN parameter under its own name -----------------
    @classmethod
    def param_names(cls) -> list[str]:
        own = super().param_names()
        return own + [p for p in LDGANSystem.param_names() if p not in own]

    def get_params(self) -> dict[str, Any]:
        own = {p: getattr(self, p) for p in super().param_names()}
        return {**own, **{k: v for k, v in self.mel_branch.get_params().items() if k not in own}}

    @property
    def candidates(self) -> list[str]:
        """Scorers the selection chooses among: the reconstruction error, then the detectors."""
        return [RECON, *self.detectors]

    # -- branches -------------------------------------------------------------------------
    def _get_encoder(self) -> Encoder:
        if not self.use_wave_branch:
            raise ConfigError("tldiffgan: the waveform branch is off (use_wave_branch=false)")
        if self._encoder is None:
            self._encoder = get_fitted_encoder(self.encoder, self.encoder_tag_, self.device, self.weights_path)
        return self._encoder

    def mel_embedding(self, clips: Sequence[Clip]) -> np.ndarray:
        """LDGAN's attention-pooled latent per clip: (n, latent_channels) float32."""
        return self.mel_branch.mel_embedding(clips)

    def wave_embedding(self, clips: Sequence[Clip]) -> np.ndarray:
        """Frozen encoder embedding per clip (cached): (n, encoder dim) float32."""
        return embed_clips(self._get_encoder(), clips, cache_dir=self.cache_dir, progress=self.progress)

    def anomaly_map(self, clip: Clip, domain: str = "logmel") -> np.ndarray:
        """The LDGAN branch's squared reconstruction error per (mel bin, frame)."""
        return self.mel_branch.anomaly_map(clip, domain)

    def reconstruction(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        """The LDGAN branch's (input log-mel, reconstruction), for pictures."""
        return self.mel_branch.reconstruction(clip)

    def temporal_attention(self, clip: Clip) -> np.ndarray:
        """TMixup's temporal attention map of one clip, (frames,) in [0, 1]."""
        return self.mel_branch.temporal_attention(clip)

    def _branch_embeddings(self, clips: Sequence[Clip]) -> dict[str, np.ndarray]:
        out = {"mel": self.mel_embedding(clips).astype(np.float64)}
        if self.use_wave_branch:
            out["wave"] = self.wave_embedding(clips).astype(np.float64)
        return out

    def _fuse(self, branches: dict[str, np.ndarray], scalers: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Standardise each branch, weight it (``balance_branches``), concatenate: (n, joint dim)."""
        dims = {k: v.shape[1] for k, v in branches.items()}
        total = sum(dims.values())
        parts = []
        for key, X in branches.items():
            mean, scale = scalers[key]
            weight = math.sqrt(total / (len(dims) * dims[key])) if self.balance_branches else 1.0
            parts.append(weight * (X - mean) / scale)
        return np.concatenate(parts, axis=1)

    def joint_embedding(self, clips: Sequence[Clip]) -> np.ndarray:
        """The fused embedding the detectors see: (n, mel dim [+ wave dim]) float64."""
        if not self.scalers_:
            raise RuntimeError(f"{self.name}: fit or load the system before embedding")
        return self._fuse(self._branch_embeddings(clips), self.scalers_)

    # -- detectors ------------------------------------------------------------------------
    def _detector(self, name: str) -> TrainingSetDetector:
        cls = DETECTORS[name]
        params: dict[str, Any] = {"standardize": False}  # the joint space is standardised already
        if "n_neighbors" in cls.param_names:
            params["n_neighbors"] = self.n_neighbors
        if "seed" in cls.param_names:
            params["seed"] = self.seed
        return cls(**params)

    def _heldout_scores(self, branches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cross-fitted detector scores of every training clip: folds of ``holdout_fraction``
        of the clips are held out in turn; scalers and detectors are fitted on the rest.
        With fewer than 3 clips, the full fit's leave-one-out training scores stand in."""
        n = len(next(iter(branches.values())))
        k = min(max(2, round(1 / self.holdout_fraction)), n)
        if n - math.ceil(n / k) < 2:
            return {d: self.detectors_[d].train_scores() for d in self.detectors}
        order = np.random.default_rng(self.seed).permutation(n)
        out = {d: np.zeros(n) for d in self.detectors}
        for held in np.array_split(order, k):
            rest = np.setdiff1d(order, held)
            scalers = {key: _scaler(X[rest]) for key, X in branches.items()}
            joint = self._fuse(branches, scalers)
            for d in self.detectors:
                out[d][held] = self._detector(d).fit(joint[rest]).score(joint[held])
        return out

    # -- fitting and selection --------------------------------------------------------------
    def fit(self, train: Sequence[Clip], val: Sequence[Clip] | None = None) -> "TLDiffGANSystem":
        """Train the LDGAN branch, fit the fusion and detectors, select the scorer, set the threshold."""
        if len(train) < 2:
            raise ConfigError(f"tldiffgan: fit needs at least 2 training clips, got {len(train)}")
        seed_everything(self.seed)
        if self.use_wave_branch:  # fail fast on missing encoder weights, before LDGAN training
            self.encoder_tag_ = encoder_tag(self._get_encoder())
        self.mel_branch.fit(train)
        branches = self._branch_embeddings(train)
        self.scalers_ = {key: _scaler(X) for key, X in branches.items()}
        self.joint_train_ = self._fuse(branches, self.scalers_)
        self.detectors_ = {d: self._detector(d).fit(self.joint_train_) for d in self.detectors}
        assert self.mel_branch.train_scores_ is not None
        self.reference_ = {RECON: np.asarray(self.mel_branch.train_scores_, np.float64),
                           **self._heldout_scores(branches)}
        self.selection_ = self._select(val)
        chosen = self.selection_["chosen"]
        self.threshold_ = gamma_threshold(self._loo_ensemble() if chosen == ENSEMBLE else self.reference_[chosen])
        return self

    def _select(self, val: Sequence[Clip] | None) -> dict[str, Any]:
        """Which scorer `score` uses, and why."""
        if self.selection not in SELECTION_RULES:
            return {"rule": "fixed", "chosen": self.selection, "reason": f"fixed by selection={self.selection!r}"}
        labelled = [c for c in (val or []) if c.label in (0, 1)]
        labels = np.array([c.label for c in labelled], dtype=int)
        n_norm, n_anom = int((labels == 0).sum()), int((labels == 1).sum())
        if self.selection == ENSEMBLE:
            reason = "ensemble: fixed by selection='ensemble'"
        elif not labelled:
            reason = "ensemble: no labelled validation data"
        elif n_norm == 0 or n_anom == 0:
            reason = f"ensemble: validation data needs normal and anomalous clips (got {n_norm} and {n_anom})"
        else:
            scores = self.candidate_scores(labelled)
            aucs = {c: float(roc_auc_score(labels, s)) for c, s in scores.items()}
            chosen = max(self.candidates, key=lambda c: aucs[c])  # ties: the earlier candidate
            return {"rule": "validation", "chosen": chosen, "validation_auc": aucs, "n_val_normal": n_norm,
                    "n_val_anomaly": n_anom, "reason": f"best validation AUC ({aucs[chosen]:.4f}) of "
                                                      f"{n_norm} normal + {n_anom} anomalous clips"}
        return {"rule": ENSEMBLE, "chosen": ENSEMBLE, "reason": reason}

    # -- scoring --------------------------------------------------------------------------
    def candidate_scores(self, clips: Sequence[Clip], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Raw scores of the named candidates (default all), higher = more anomalous."""
        if not self.detectors_:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        names = list(names or self.candidates)
        out: dict[str, np.ndarray] = {}
        if RECON in names:
            out[RECON] = self.mel_branch.score(clips)
        if any(n != RECON for n in names):
            joint = self.joint_embedding(clips)
            out.update({n: self.detectors_[n].score(joint) for n in names if n != RECON})
        return {n: out[n] for n in names}

    def _cdf(self, name: str, scores: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """Kernel-smoothed empirical CDF of ``scores`` among the candidate's held-out training
        scores (logistic kernel, Silverman bandwidth); ``exclude_self`` = leave-one-out for
        the reference scores themselves."""
        ref = self.reference_[name]
        z = (scores[:, None] - ref[None, :]) / _logistic_scale(ref)
        cdf = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, overflow-free
        if exclude_self:
            np.fill_diagonal(cdf, 0.0)
            return cdf.sum(axis=1) / (len(ref) - 1)
        return cdf.mean(axis=1)

    def _loo_ensemble(self) -> np.ndarray:
        return np.mean([self._cdf(c, self.reference_[c], exclude_self=True) for c in self.candidates], axis=0)

    def score(self, clips: Sequence[Clip]) -> np.ndarray:
        """Score of the selected candidate, or the mean CDF position over all candidates (ensemble)."""
        if not self.selection_:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        chosen = self.selection_["chosen"]
        if chosen != ENSEMBLE:
            return self.candidate_scores(clips, [chosen])[chosen]
        scores = self.candidate_scores(clips)
        return np.mean([self._cdf(c, s) for c, s in scores.items()], axis=0)

    # -- persistence ------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.joint_train_ is None:
            raise RuntimeError(f"{self.name}: nothing to save, the system is not fitted")
        state = {f"ldgan.{k}": v for k, v in self.mel_branch.state_tensors().items()}
        for key, (mean, scale) in self.scalers_.items():
            state[f"scaler.{key}.mean"], state[f"scaler.{key}.scale"] = _tensor(mean), _tensor(scale)
        state["joint_train"] = _tensor(self.joint_train_)  # every detector's training matrix, stored once
        for name, det in self.detectors_.items():
            state.update({f"detector.{name}.{k}": _tensor(v) for k, v in det.state().items() if k != "train"})
        state.update({f"reference.{c}": _tensor(r) for c, r in self.reference_.items()})
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "joint_train" not in tensors:
            raise CheckpointError(f"{self.name}: saved weights hold no joint training matrix")
        self.mel_branch.load_state_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("ldgan.")})
        branches = ["mel", "wave"] if self.use_wave_branch else ["mel"]
        self.scalers_ = {b: (tensors[f"scaler.{b}.mean"].numpy(), tensors[f"scaler.{b}.scale"].numpy())
                         for b in branches}
        self.joint_train_ = tensors["joint_train"].numpy()
        self.detectors_ = {}
        for name in self.detectors:
            prefix = f"detector.{name}."
            state = {k[len(prefix):]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
            self.detectors_[name] = DETECTORS[name].from_state({"train": self.joint_train_, **state},
                                                                 **self._detector(name).get_params())
        self.reference_ = {c: tensors[f"reference.{c}"].numpy() for c in self.candidates}

    def extra_state(self) -> dict[str, Any]:
        tag = self.encoder_tag_ or {}
        return {"ldgan": self.mel_branch.extra_state(), "selection": self.selection_,
                "candidates": self.candidates, "encoder": tag.get("encoder"),
                "encoder_weights": tag.get("weights"), "encoder_weights_sha256": tag.get("weights_sha256"),
                "dims": {b: int(m.shape[0]) for b, (m, _) in self.scalers_.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.mel_branch.load_extra_state(state.get("ldgan", {}))
        self.selection_ = dict(state.get("selection", {}))
        if state.get("encoder") not in (None, self.encoder):
            raise CheckpointError(f"{self.name}: saved with encoder {state['encoder']!r}, configured {self.encoder!r}")
        if state.get("encoder_weights_sha256"):
            self.encoder_tag_ = {"encoder": state["encoder"], "weights": state.get("encoder_weights"),
                                 "weights_sha256": state["encoder_weights_sha256"]}


def _scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler statistics (population std; constant dimensions get scale 1)."""
    scale = X.std(axis=0)
    return X.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)


def _logistic_scale(ref: np.ndarray) -> float:
    """Logistic-kernel scale whose kernel std equals Silverman's bandwidth
    0.9 min(std, IQR / 1.34) n^(-1/5); never zero."""
    std = float(ref.std())
    iqr = float(np.subtract(*np.percentile(ref, [75, 25])))
    spread = min(std, iqr / 1.34) if iqr > 0 else std
    bandwidth = 0.9 * spread * len(ref) ** -0.2
    return max(bandwidth * math.sqrt(3) / math.pi, 1e-12 * max(1.0, float(np.abs(ref).max())))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
