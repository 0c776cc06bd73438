"""DCASE Task 2 metrics, computed exactly as the official evaluators do.

* AUC = ``roc_auc_score``; pAUC = ``roc_auc_score(max_fpr=0.1)`` (McClish-standardised).
* 2021+: per section, AUC(source) uses the source normals and *all* anomalies, AUC(target)
  the target normals and all anomalies; pAUC uses the whole section; precision, recall and
  F1 of the decisions per domain; official score = harmonic mean of every AUC-s, AUC-t and
  pAUC over machine types and sections (values floored at machine epsilon).
* 2020: per machine id, AUC and pAUC; arithmetic means per machine type.
* 95% confidence intervals by jackknife over clips, as the DCASE 2024 evaluator.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np
import scipy.stats
from sklearn import metrics

MAX_FPR = 0.1
EPS = sys.float_info.epsilon
Labels = Sequence[int] | np.ndarray  # 0 normal, 1 anomalous, one per clip
Scores = Sequence[float] | np.ndarray


def auc(y_true: Labels, scores: Scores) -> float:
    return float(metrics.roc_auc_score(y_true, scores))


def pauc(y_true: Labels, scores: Scores, max_fpr: float = MAX_FPR) -> float:
    return float(metrics.roc_auc_score(y_true, scores, max_fpr=max_fpr))


def _prf(y_true: np.ndarray, decisions: np.ndarray) -> tuple[float, float, float]:
    _, fp, fn, tp = metrics.confusion_matrix(y_true, decisions, labels=[0, 1]).ravel()
    prec = tp / max(tp + fp, EPS)
    rec = tp / max(tp + fn, EPS)
    return float(prec), float(rec), float(2.0 * prec * rec / max(prec + rec, EPS))


def section_metrics(
    y_true: Labels,
    scores: Scores,
    domains: Sequence[str | None] | None = None,
    decisions: Sequence[int] | None = None,
    max_fpr: float = MAX_FPR,
) -> dict[str, float | int | None]:
    """Metrics of one section (or machine id). ``domains`` holds "source"/"target"/None per clip.

    Keys: auc, pauc, auc_source, auc_target (None without that domain's normals),
    precision/recall/f1 (whole section) and per domain when domains exist, n_normal, n_anomaly.
    """
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=float)
    if len(y) != len(s):
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    if not (y == 0).any() or not (y == 1).any():
        raise ValueError("AUC needs both normal and anomalous clips")
    out: dict[str, float | int | None] = {
        "n_normal": int((y == 0).sum()),
        "n_anomaly": int((y == 1).sum()),
        "auc": auc(y, s),
        "pauc": pauc(y, s, max_fpr),
    }
    dom = np.asarray([d or "" for d in domains]) if domains is not None else np.full(len(y), "")
    dec = np.asarray(decisions, dtype=int) if decisions is not None else None
    if dec is not None:
        out["precision"], out["recall"], out["f1"] = _prf(y, dec)
    for name in ("source", "target"):
        in_domain = dom == name
        use = in_domain | (y == 1)
        has_normals = bool((in_domain & (y == 0)).any())
        out[f"auc_{name}"] = auc(y[use], s[use]) if has_normals else None
        if dec is not None and in_domain.any():
            p, r, f = _prf(y[in_domain], dec[in_domain])
            out[f"precision_{name}"], out[f"recall_{name}"], out[f"f1_{name}"] = p, r, f
    return out


def hmean(values: Sequence[float]) -> float:
    """Harmonic mean with values floored at machine epsilon (as the official evaluator)."""
    return float(scipy.stats.hmean(np.maximum(np.asarray(values, dtype=float), EPS)))


def official_score_terms(section: dict) -> list[str]:
    """The metric keys one section contributes to `official_score`: its AUC-s and AUC-t where it
    has domains, its AUC where it has none (2020 layouts), and its pAUC."""
    domains = [k for k in ("auc_source", "auc_target") if section.get(k) is not None]
    return (domains or ["auc"]) + ["pauc"]


def official_score(sections: Sequence[dict]) -> float | None:
    """Harmonic mean of all AUC-s, AUC-t and pAUC values of the given sections (2021+).

    Sections without domains contribute their AUC in place of AUC-s (the 2020 convention
    has no official harmonic score; this keeps one number for every layout).
    """
    values = [float(sec[k]) for sec in sections for k in official_score_terms(sec)]
    return hmean(values) if values else None


def jackknife_ci95(
    fn: Callable[[np.ndarray, np.ndarray], float],
    y_true: Labels,
    scores: Scores,
    dcase_evaluator: bool = False,
) -> tuple[float, float]:
    """(jackknife estimate, 95% half-width) of ``fn(y, s)`` over clips (Mesaros et al. 2019).

    The standard jackknife standard error is sqrt((n-1)/n * sum((theta_i - mean)^2)).
    The DCASE 2024 evaluator divides the sum by n(n-1) instead, which shrinks the interval
    by a factor n-1; ``dcase_evaluator=True`` reproduces its number for comparison.
    """
    y, s = np.asarray(y_true), np.asarray(scores)
    n = len(y)
    theta = fn(y, s)
    keep = ~np.eye(n, dtype=bool)
    thetas = np.array([fn(y[keep[i]], s[keep[i]]) for i in range(n)])
    estimate = float(np.mean(n * theta - (n - 1) * thetas))
    spread = np.sum((thetas - thetas.mean()) ** 2)
    sigma = np.sqrt(spread / (n * (n - 1))) if dcase_evaluator else np.sqrt(spread * (n - 1) / n)
    t_crit = abs(scipy.stats.t.ppf(0.025, n - 1))
    return estimate, float(t_crit * sigma)
