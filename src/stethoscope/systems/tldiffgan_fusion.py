"""TLDiffGAN's fitted fusion, kept beside the system (`systems.tldiffgan`; not a system).

The fusion standardises each branch's embedding, weights and concatenates them into the joint
space the detectors see (`fuse_branches`); the detectors' held-out training scores come from
folds refitted on that space (`heldout_scores`); the scorer is chosen by validation AUC or
falls back to the ensemble of kernel-CDF positions (`select_scorer`, `loo_ensemble`). The
hyperparameter check of the candidates (`check_candidates`) and the export plan of the scoring
network (`plan_export`) live here too; the saved state in `tldiffgan_state`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..data.clip import Clip
from ..detectors.embedding import DETECTORS, TrainingSetDetector
from ..errors import ConfigError
from ..features.logmel import LogMelParams
from ..models.tldiffgan import TLDiffGANScorer, fuse, kernel_cdf, logistic_scale
from .export_plan import EFFICIENTAT_MEL, ExportPlan, batch_dim, efficientat_frames

RECON = "recon"
SELECTION_RULES = ("validation", "ensemble")
ENSEMBLE = "ensemble"

Scalers = dict[str, tuple[np.ndarray, np.ndarray]]  # branch -> (mean, scale)


def scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler statistics (population std; constant dimensions get scale 1)."""
    scale = X.std(axis=0)
    return X.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)


def fuse_branches(
    branches: Mapping[str, np.ndarray], scalers: Scalers, balance: bool
) -> np.ndarray:
    """Standardise each branch, weight it (``balance``), concatenate: (n, joint dim)
    (`models.tldiffgan.fuse`, what the scoring module runs)."""
    stats = []
    for key in branches:
        mean, scale = scalers[key]
        stats.append((torch.from_numpy(mean), torch.from_numpy(scale)))
    parts = [torch.from_numpy(X) for X in branches.values()]
    return fuse(parts, stats, balance).numpy()


def heldout_scores(
    branches: Mapping[str, np.ndarray],
    detectors: Mapping[str, TrainingSetDetector],
    new_detector: Callable[[str], TrainingSetDetector],
    holdout_fraction: float,
    seed: int,
    balance: bool,
) -> dict[str, np.ndarray]:
    """Cross-fitted detector scores of every training clip: folds of ``holdout_fraction``
    of the clips are held out in turn; scalers and ``new_detector(name)`` copies are fitted on
    the rest. With fewer than 3 clips, the fitted ``detectors``' leave-one-out training scores
    stand in."""
    n = len(next(iter(branches.values())))
    k = min(max(2, round(1 / holdout_fraction)), n)
    if n - math.ceil(n / k) < 2:
        return {d: det.train_scores() for d, det in detectors.items()}
    order = np.random.default_rng(seed).permutation(n)
    out = {d: np.zeros(n) for d in detectors}
    for held in np.array_split(order, k):
        rest = np.setdiff1d(order, held)
        scalers = {key: scaler(X[rest]) for key, X in branches.items()}
        joint = fuse_branches(branches, scalers, balance)
        for d in detectors:
            out[d][held] = new_detector(d).fit(joint[rest]).score(joint[held])
    return out


def fit_fusion(
    branches: Mapping[str, np.ndarray],
    new_detector: Callable[[str], TrainingSetDetector],
    names: Sequence[str],
    holdout_fraction: float,
    seed: int,
    balance: bool,
) -> tuple[Scalers, np.ndarray, dict[str, TrainingSetDetector], dict[str, np.ndarray]]:
    """Fit the fusion on the training clips' ``branches``: (scalers, joint training matrix,
    the ``names`` detectors fitted on it, their held-out scores (`heldout_scores`))."""
    scalers = {key: scaler(X) for key, X in branches.items()}
    joint = fuse_branches(branches, scalers, balance)
    detectors = {d: new_detector(d).fit(joint) for d in names}
    heldout = heldout_scores(branches, detectors, new_detector, holdout_fraction, seed, balance)
    return scalers, joint, detectors, heldout


def loo_ensemble(reference: Mapping[str, np.ndarray], candidates: Sequence[str]) -> np.ndarray:
    """The ensemble's score of every training clip: the mean over ``candidates`` of its
    kernel-smoothed CDF position among the candidate's other held-out training scores
    (logistic kernel, Silverman bandwidth; leave-one-out)."""
    positions = []
    for name in candidates:
        ref = reference[name]
        cdf = kernel_cdf(ref, ref, logistic_scale(ref))
        np.fill_diagonal(cdf, 0.0)
        positions.append(cdf.sum(axis=1) / (len(ref) - 1))
    return np.mean(positions, axis=0)


def select_scorer(
    selection: str,
    candidates: Sequence[str],
    val: Sequence[Clip] | None,
    candidate_scores: Callable[[Sequence[Clip]], dict[str, np.ndarray]],
) -> dict[str, Any]:
    """Which scorer the system uses, and why: fixed by ``selection``, else the candidate with
    the best AUC on labelled ``val`` clips (``candidate_scores`` scores them), else the
    ensemble."""
    if selection not in SELECTION_RULES:
        return {"rule": "fixed", "chosen": selection, "reason": f"fixed by selection={selection!r}"}
    labelled = [c for c in (val or []) if c.label in (0, 1)]
    labels = np.array([c.label for c in labelled], dtype=int)
    n_norm, n_anom = int((labels == 0).sum()), int((labels == 1).sum())
    if selection == ENSEMBLE:
        reason = "ensemble: fixed by selection='ensemble'"
    elif not labelled:
        reason = "ensemble: no labelled validation data"
    elif n_norm == 0 or n_anom == 0:
        reason = (
            "ensemble: validation data needs normal and anomalous clips "
            f"(got {n_norm} and {n_anom})"
        )
    else:
        scores = candidate_scores(labelled)
        kept = np.isfinite(scores[candidates[0]])  # NaN: left out by the audio checks
        aucs = {c: float(roc_auc_score(labels[kept], s[kept])) for c, s in scores.items()}
        chosen = max(candidates, key=lambda c: aucs[c])  # ties: the earlier candidate
        return {
            "rule": "validation",
            "chosen": chosen,
            "validation_auc": aucs,
            "n_val_normal": n_norm,
            "n_val_anomaly": n_anom,
            "reason": f"best validation AUC ({aucs[chosen]:.4f}) of "
            f"{n_norm} normal + {n_anom} anomalous clips",
        }
    return {"rule": ENSEMBLE, "chosen": ENSEMBLE, "reason": reason}


def check_candidates(detectors: Sequence[str], selection: str) -> None:
    """Clear error unless ``detectors`` are distinct known names and ``selection`` is a rule
    (`SELECTION_RULES`) or a candidate (the reconstruction error or one of ``detectors``)."""
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown or not detectors or len(set(detectors)) != len(detectors):
        raise ConfigError(
            f"tldiffgan: detectors must be distinct names from {list(DETECTORS)}, "
            f"got {list(detectors)}"
        )
    allowed = (*SELECTION_RULES, RECON, *detectors)
    if selection not in allowed:
        raise ConfigError(f"tldiffgan: selection must be one of {list(allowed)}, got {selection!r}")


def plan_export(
    module: TLDiffGANScorer, params: LogMelParams, samples: int, wave: bool, chosen: str
) -> ExportPlan:
    """The export plan of the scoring ``module`` built for clips of ``samples``: the log-mel
    of ``params`` in, with the waveform branch (``wave``) the EfficientAT mel too; batch size
    dynamic, clip length fixed (the LDGAN noise is fixed per length)."""
    frames = params.n_frames(samples)
    inputs = {"logmel": torch.randn(2, params.n_mels, frames)}
    fronts: dict[str, Any] = {"logmel": params}
    if wave:
        inputs["mn04_mel"] = torch.randn(2, 128, efficientat_frames(samples))
        fronts["mn04_mel"] = EFFICIENTAT_MEL
    details = {"selection": chosen, "candidates": module.fusion.names}
    return ExportPlan(
        module,
        inputs,
        {k: {0: batch_dim()} for k in inputs},
        fronts,
        ["score", "anomaly_map"],
        samples,
        details,
    )
