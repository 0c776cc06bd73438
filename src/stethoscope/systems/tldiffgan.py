"""TLDiffGAN: LDGAN mel branch + frozen waveform encoder, fused embeddings, selected detector.

Per machine type (one system each):

1. The LDGAN mel branch (`LDGANSystem`; its parameters nest under ``ldgan``, e.g.
   ``ldgan: {epochs: 20}`` or ``--set ldgan.epochs=20``, over LDGAN's constructor defaults)
   gives a reconstruction error per clip and an attention-pooled ``mel_embedding``.
2. A frozen waveform encoder (``encoder``: EfficientAT mn04 by default) gives a
   ``wave_embedding``; ``use_wave_branch=False`` drops it (ablation "without EAT").
   Our extension, off by default (``mel_stats_branch``): a third branch, the per-bin log-mel
   statistics of `mel_stats` (mean, std, p10, p90, max per bin), joins the joint space.
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
6. Threshold (`System.fit_threshold`): by default (``threshold_fit: crossfit``) the DCASE
   gamma fit of held-out scores from copies of the whole system trained on the other folds,
   each scoring with the chosen scorer; ``in_sample`` fits it to the chosen scorer's
   reference scores (held-out for the detectors, in-sample for "recon").

The rules are written out in docs/tldiffgan.md ("TLDiffGAN system").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..data.clip import Clip
from ..detectors.embedding import DETECTORS, TrainingSetDetector
from ..detectors.module import DetectorModule
from ..encoders import ENCODERS, embed_decoded, encoder_tag, get_fitted_encoder
from ..encoders.base import Encoder
from ..engine import RunContext
from ..errors import CheckpointError, ConfigError
from ..features.extract import Decoded, FeatureRequest, MelStore, iter_decoded
from ..models.embedding import EncoderNet, encoder_refusal
from ..models.mel_stats import DEFAULT_STATS, MelStatsFeatures, features_of
from ..models.tldiffgan import FusionScorer, TLDiffGANScorer, fuse, kernel_cdf, logistic_scale
from .base import Explanation, System, register
from .export_plan import EFFICIENTAT_MEL, ExportPlan, batch_dim, clip_samples, efficientat_frames
from .ldgan import BranchEval, LDGANSystem, MelBranch
from .registry import part_params

RECON = "recon"
SELECTION_RULES = ("validation", "ensemble")
ENSEMBLE = "ensemble"
MIN_TRAIN_CLIPS = 2  # the detectors' cross-fitting needs two


@register
class TLDiffGANSystem(System):
    """Dual-branch TLDiffGAN: LDGAN reconstruction + mel/wave joint embeddings + detector bank."""

    name = "tldiffgan"
    description = (
        "TLDiffGAN: LDGAN mel branch + frozen waveform encoder, fused, detector "
        "selected per machine"
    )
    smoke_params: ClassVar[dict[str, Any]] = {
        "ldgan": LDGANSystem.smoke_params,
        "encoder": "random",
        "detectors": ["knn", "gmm"],
    }
    no_export = None

    param_rules: ClassVar[dict[str, Any]] = {
        "n_neighbors": "[1, inf)",
        "holdout_fraction": "(0, 0.5]",
    }
    parts: ClassVar[dict[str, type[System]]] = {"ldgan": LDGANSystem}

    # hyperparameters: the constructor's arguments, stored by `_set_params`
    encoder: str
    use_wave_branch: bool
    balance_branches: bool
    detectors: Sequence[str]
    n_neighbors: int
    selection: str
    holdout_fraction: float
    mel_stats_branch: bool

    def __init__(
        self,
        *,
        encoder: str = "efficientat_mn04",
        use_wave_branch: bool = True,
        balance_branches: bool = True,
        detectors: Sequence[str] = ("knn", "lof", "gmm", "sos"),
        n_neighbors: int = 2,
        selection: str = "validation",
        holdout_fraction: float = 0.2,
        mel_stats_branch: bool = False,
        ldgan: dict[str, Any] | None = None,
    ) -> None:
        own = {k: v for k, v in locals().items() if k not in ("self", "ldgan", "__class__")}
        detectors = list(detectors)
        unknown = [d for d in detectors if d not in DETECTORS]
        if unknown or not detectors or len(set(detectors)) != len(detectors):
            raise ConfigError(
                f"tldiffgan: detectors must be distinct names from {list(DETECTORS)}, "
                f"got {detectors}"
            )
        allowed = (*SELECTION_RULES, RECON, *detectors)
        if selection not in allowed:
            raise ConfigError(
                f"tldiffgan: selection must be one of {list(allowed)}, got {selection!r}"
            )
        mel_params = part_params(self.name, "ldgan", LDGANSystem, ldgan)
        self._set_params({**own, "ldgan": mel_params})
        self.branch = MelBranch(mel_params)
        self._encoder: tuple[str, Encoder] | None = None  # (device, encoder)
        self.encoder_tag_: dict[str, Any] | None = None
        self.scalers_: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # branch -> (mean, scale)
        self.joint_train_: np.ndarray | None = None
        self.detectors_: dict[str, TrainingSetDetector] = {}
        self.reference_: dict[
            str, np.ndarray
        ] = {}  # candidate -> held-out scores of the training clips
        self.selection_: dict[str, Any] = {}
        self._seed = 0  # the fitting run's seed: detectors and cross-fitting folds use it

    def weights_sha256(self) -> str | None:
        """The waveform encoder's weights (known once `fit` or a load has chosen them)."""
        return (self.encoder_tag_ or {}).get("weights_sha256") if self.use_wave_branch else None

    @property
    def candidates(self) -> list[str]:
        """Scorers the selection chooses among: the reconstruction error, then the detectors."""
        return [RECON, *self.detectors]

    def feature_request(self) -> FeatureRequest:
        return FeatureRequest(logmel=self.branch.logmel_params, wave=self.use_wave_branch)

    # -- branches -------------------------------------------------------------------------
    def _get_encoder(self, ctx: RunContext) -> Encoder:
        if not self.use_wave_branch:
            raise ConfigError("tldiffgan: the waveform branch is off (use_wave_branch=false)")
        if self._encoder is None or self._encoder[0] != ctx.device:
            self._encoder = (
                ctx.device,
                get_fitted_encoder(
                    self.encoder,
                    self.encoder_tag_,
                    ctx.device,
                    ctx.weights_dirs,
                    self.weights_hint_,
                ),
            )
        return self._encoder[1]

    def _branches(
        self, decoded: Decoded, ctx: RunContext, mel: BranchEval | None = None
    ) -> dict[str, Any]:
        """Every branch of one decoded chunk from one pass: the LDGAN evaluation (reconstruction
        score and mel embedding) and, with the waveform branch, the encoder embedding."""
        mel = mel or self.branch.evaluate(decoded.logmels, ctx)  # type: ignore[arg-type]
        out: dict[str, Any] = {"recon": mel.scores, "mel": mel.embeddings.astype(np.float64)}
        if self.use_wave_branch:
            out["wave"] = embed_decoded(self._get_encoder(ctx), decoded, ctx.cache_dir).astype(
                np.float64
            )
        if self.mel_stats_branch:
            out["stats"] = self._stats(decoded.logmels)  # type: ignore[arg-type]
        return out

    def _stats_module(self) -> MelStatsFeatures:
        return MelStatsFeatures(self.branch.logmel_params.n_mels, DEFAULT_STATS)

    def _stats(self, logmels: Sequence[np.ndarray]) -> np.ndarray:
        """The `mel_stats` branch: per-bin statistics of the log-mels (our extension)."""
        return features_of(self._stats_module(), logmels)

    def temporal_attention(self, clip: Clip, ctx: RunContext | None = None) -> np.ndarray:
        """TMixup's temporal attention map of one clip, (frames,) in [0, 1]."""
        return self.explain(clip, ctx).extras["attention"]

    def _fuse(
        self, branches: dict[str, np.ndarray], scalers: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """Standardise each branch, weight it (``balance_branches``), concatenate: (n, joint dim)
        (`models.tldiffgan.fuse`, what the scoring module runs)."""
        stats = []
        for key in branches:
            mean, scale = scalers[key]
            stats.append((torch.from_numpy(mean), torch.from_numpy(scale)))
        parts = [torch.from_numpy(X) for X in branches.values()]
        return fuse(parts, stats, self.balance_branches).numpy()

    def joint_embedding(self, clips: Sequence[Clip], ctx: RunContext | None = None) -> np.ndarray:
        """The fused embedding the detectors see: (n, mel dim [+ wave dim]) float64."""
        if not self.scalers_:
            raise RuntimeError(f"{self.name}: fit or load the system before embedding")
        ctx = ctx or RunContext()
        parts = [
            self._fuse(_drop_recon(self._branches(d, ctx)), self.scalers_)
            for d in iter_decoded(clips, self.feature_request(), ctx.cache_dir, ctx.progress)
        ]
        return np.concatenate(parts)

    # -- detectors ------------------------------------------------------------------------
    def _detector(self, name: str) -> TrainingSetDetector:
        cls = DETECTORS[name]
        params: dict[str, Any] = {"standardize": False}  # the joint space is standardised already
        if "n_neighbors" in cls.param_names:
            params["n_neighbors"] = self.n_neighbors
        if "seed" in cls.param_names:
            params["seed"] = self._seed
        return cls(**params)

    def _heldout_scores(self, branches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cross-fitted detector scores of every training clip: folds of ``holdout_fraction``
        of the clips are held out in turn; scalers and detectors are fitted on the rest.
        With fewer than 3 clips, the full fit's leave-one-out training scores stand in."""
        n = len(next(iter(branches.values())))
        k = min(max(2, round(1 / self.holdout_fraction)), n)
        if n - math.ceil(n / k) < 2:
            return {d: self.detectors_[d].train_scores() for d in self.detectors}
        order = np.random.default_rng(self._seed).permutation(n)
        out = {d: np.zeros(n) for d in self.detectors}
        for held in np.array_split(order, k):
            rest = np.setdiff1d(order, held)
            scalers = {key: _scaler(X[rest]) for key, X in branches.items()}
            joint = self._fuse(branches, scalers)
            for d in self.detectors:
                out[d][held] = self._detector(d).fit(joint[rest]).score(joint[held])
        return out

    # -- fitting and selection --------------------------------------------------------------
    def fit(
        self,
        train_clips: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> TLDiffGANSystem:
        """Train the LDGAN branch, fit the fusion and detectors, select the scorer, set the
        threshold."""
        ctx = self._begin_fit(train_clips, ctx, minimum=MIN_TRAIN_CLIPS)
        self._seed = ctx.seed
        if self.use_wave_branch:  # fail fast on missing encoder weights, before LDGAN training
            self.encoder_tag_ = encoder_tag(self._get_encoder(ctx))

        def embed(
            part: Decoded,
        ) -> np.ndarray:  # each chunk as it is decoded: waveforms are never kept
            return embed_decoded(self._get_encoder(ctx), part, ctx.cache_dir).astype(np.float64)

        store, waves = MelStore.from_clips(
            train_clips,
            self.feature_request(),
            ctx.cache_dir,
            ctx.progress,
            embed if self.use_wave_branch else None,
            spill_dir=ctx.cache_dir,
        )
        mels, kept = store.mels(), store.clips
        assert kept is not None  # `from_clips` keeps the clips it decoded
        self.branch.fit(mels, kept, ctx, self.fingerprint(train_clips, ctx), f"train {self.name}")
        mel = self.branch.evaluate(mels, ctx)
        branches = {
            "mel": mel.embeddings.astype(np.float64),
            **({"wave": np.concatenate(waves)} if waves else {}),
            **({"stats": self._stats(mels)} if self.mel_stats_branch else {}),
        }
        self.scalers_ = {key: _scaler(X) for key, X in branches.items()}
        self.joint_train_ = self._fuse(branches, self.scalers_)
        self.detectors_ = {d: self._detector(d).fit(self.joint_train_) for d in self.detectors}
        self.reference_ = {
            RECON: np.asarray(mel.scores, np.float64),
            **self._heldout_scores(branches),
        }
        self.selection_ = self._select(val, ctx)
        chosen = self.selection_["chosen"]
        in_sample = self._loo_ensemble() if chosen == ENSEMBLE else self.reference_[chosen]
        self.fit_threshold(in_sample, kept, ctx, minimum=MIN_TRAIN_CLIPS)
        return self

    def fold_params(self) -> dict[str, Any]:
        """Threshold folds score with the scorer this fit chose (no selection of their own)."""
        return {**super().fold_params(), "selection": self.selection_["chosen"]}

    def _select(self, val: Sequence[Clip] | None, ctx: RunContext) -> dict[str, Any]:
        """Which scorer `score` uses, and why."""
        if self.selection not in SELECTION_RULES:
            return {
                "rule": "fixed",
                "chosen": self.selection,
                "reason": f"fixed by selection={self.selection!r}",
            }
        labelled = [c for c in (val or []) if c.label in (0, 1)]
        labels = np.array([c.label for c in labelled], dtype=int)
        n_norm, n_anom = int((labels == 0).sum()), int((labels == 1).sum())
        if self.selection == ENSEMBLE:
            reason = "ensemble: fixed by selection='ensemble'"
        elif not labelled:
            reason = "ensemble: no labelled validation data"
        elif n_norm == 0 or n_anom == 0:
            reason = (
                "ensemble: validation data needs normal and anomalous clips "
                f"(got {n_norm} and {n_anom})"
            )
        else:
            scores = self.candidate_scores(labelled, ctx=ctx)
            kept = np.isfinite(scores[self.candidates[0]])  # NaN: left out by the audio checks
            aucs = {c: float(roc_auc_score(labels[kept], s[kept])) for c, s in scores.items()}
            chosen = max(self.candidates, key=lambda c: aucs[c])  # ties: the earlier candidate
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

    # -- scoring --------------------------------------------------------------------------
    def candidate_scores(
        self,
        clips: Sequence[Clip],
        names: Sequence[str] | None = None,
        ctx: RunContext | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw scores of the named candidates (default all), higher = more anomalous; NaN for
        clips the audio checks left out."""
        ctx = ctx or RunContext()
        out = {n: np.full(len(clips), np.nan) for n in (names or self.candidates)}
        for d in iter_decoded(clips, self.feature_request(), ctx.cache_dir, ctx.progress):
            for n, values in self._candidates_decoded(d, ctx, names).items():
                out[n][d.index] = values
        return out

    def _candidates_decoded(
        self,
        decoded: Decoded,
        ctx: RunContext,
        names: Sequence[str] | None = None,
        mel: BranchEval | None = None,
    ) -> dict[str, np.ndarray]:
        if not self.detectors_:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        names = list(names or self.candidates)
        branches = self._branches(decoded, ctx, mel)
        out = {RECON: branches["recon"]}
        if any(n != RECON for n in names):
            joint = self._fuse(_drop_recon(branches), self.scalers_)
            out.update({n: self.detectors_[n].score(joint) for n in names if n != RECON})
        return {n: out[n] for n in names}

    def _cdf(self, name: str, scores: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """Kernel-smoothed empirical CDF of ``scores`` among the candidate's held-out training
        scores (logistic kernel, Silverman bandwidth); ``exclude_self`` = leave-one-out for
        the reference scores themselves."""
        ref = self.reference_[name]
        cdf = kernel_cdf(scores, ref, logistic_scale(ref))
        if exclude_self:
            np.fill_diagonal(cdf, 0.0)
            return cdf.sum(axis=1) / (len(ref) - 1)
        return cdf.mean(axis=1)

    def _loo_ensemble(self) -> np.ndarray:
        return np.mean(
            [self._cdf(c, self.reference_[c], exclude_self=True) for c in self.candidates], axis=0
        )

    def _combine(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """The chosen candidate's score or the ensemble's mean CDF position (`FusionScorer`)."""
        return self._fusion().combine(scores)

    def _fusion(self, torch_detectors: bool = False) -> FusionScorer:
        """The fusion and scorer choice of the fitted system; ``torch_detectors``: with the
        chosen detectors as torch modules (the whole scoring network, `scoring_module`)."""
        names = self._needed()
        dets = (
            {n: DetectorModule(self.detectors_[n]) for n in names if n != RECON}
            if torch_detectors
            else None
        )
        return FusionScorer(
            self.scalers_,
            self.balance_branches,
            names,
            RECON,
            self.selection_["chosen"] == ENSEMBLE,
            self.reference_,
            dets,
        )

    def scoring_module(
        self, frames: int | None = None, ctx: RunContext | None = None
    ) -> TLDiffGANScorer:
        """LDGAN branch (with the scoring noise of ``frames``-frame clips), the waveform encoder's
        network, fusion, chosen detectors or ensemble: `models.tldiffgan.TLDiffGANScorer`."""
        encoder = None
        if self.use_wave_branch:
            encoder = EncoderNet(self._get_encoder(ctx or RunContext()))
        stats = self._stats_module() if self.mel_stats_branch else None
        return TLDiffGANScorer(
            self.branch.scoring_module(frames), encoder, self._fusion(torch_detectors=True), stats
        )

    def export_refusal(self) -> str | None:
        refusal = encoder_refusal(self.name, self.encoder) if self.use_wave_branch else None
        return refusal or super().export_refusal()

    def export_plan(
        self, seconds: float | None = None, ctx: RunContext | None = None
    ) -> ExportPlan:
        """One clip length (``seconds``, default 10): its LDGAN noise is fixed per length."""
        self.refuse_export()
        samples = clip_samples(seconds)
        params = self.branch.logmel_params
        frames = params.n_frames(samples)
        module = self.scoring_module(frames, ctx)
        inputs = {"logmel": torch.randn(2, params.n_mels, frames)}
        fronts: dict[str, Any] = {"logmel": params}
        if self.use_wave_branch:
            inputs["mn04_mel"] = torch.randn(2, 128, efficientat_frames(samples))
            fronts["mn04_mel"] = EFFICIENTAT_MEL
        details = {"selection": self.selection_["chosen"], "candidates": module.fusion.names}
        return ExportPlan(
            module,
            inputs,
            {k: {0: batch_dim()} for k in inputs},
            fronts,
            ["score", "anomaly_map"],
            samples,
            details,
        )

    def _needed(self) -> list[str]:
        if not self.selection_:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        chosen = self.selection_["chosen"]
        return self.candidates if chosen == ENSEMBLE else [chosen]

    def score_decoded(self, decoded: Decoded, ctx: RunContext) -> np.ndarray:
        return self._combine(self._candidates_decoded(decoded, ctx, self._needed()))

    def explain_decoded(self, decoded: Decoded, ctx: RunContext) -> Explanation:
        """The system's score and the LDGAN branch's map, reconstruction and attention, from one
        LDGAN pass shared by the score and the pictures."""
        mel = self.branch.evaluate(decoded.logmels, ctx, maps=True)  # type: ignore[arg-type]
        score = float(self._combine(self._candidates_decoded(decoded, ctx, self._needed(), mel))[0])
        return self.branch.explain_from(decoded.logmels[0], score, mel)  # type: ignore[index]

    # -- persistence ------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.joint_train_ is None:
            raise RuntimeError(f"{self.name}: nothing to save, the system is not fitted")
        state = {f"ldgan.{k}": v for k, v in self.branch.state_tensors().items()}
        for key, (mean, scale) in self.scalers_.items():
            state[f"scaler.{key}.mean"], state[f"scaler.{key}.scale"] = (
                _tensor(mean),
                _tensor(scale),
            )
        state["joint_train"] = _tensor(
            self.joint_train_
        )  # every detector's training matrix, stored once
        for name, det in self.detectors_.items():
            state.update(
                {f"detector.{name}.{k}": _tensor(v) for k, v in det.state().items() if k != "train"}
            )
        state.update({f"reference.{c}": _tensor(r) for c, r in self.reference_.items()})
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if "joint_train" not in tensors:
            raise CheckpointError(f"{self.name}: saved weights hold no joint training matrix")
        self.branch.load_state_tensors(
            {k[6:]: v for k, v in tensors.items() if k.startswith("ldgan.")}
        )
        branches = [
            "mel",
            *(["wave"] if self.use_wave_branch else []),
            *(["stats"] if self.mel_stats_branch else []),
        ]
        self.scalers_ = {
            b: (tensors[f"scaler.{b}.mean"].numpy(), tensors[f"scaler.{b}.scale"].numpy())
            for b in branches
        }
        self.joint_train_ = tensors["joint_train"].numpy()
        self.detectors_ = {}
        for name in self.detectors:
            prefix = f"detector.{name}."
            state = {
                k[len(prefix) :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)
            }
            self.detectors_[name] = DETECTORS[name].from_state(
                {"train": self.joint_train_, **state}, **self._detector(name).get_params()
            )
        self.reference_ = {c: tensors[f"reference.{c}"].numpy() for c in self.candidates}

    def extra_state(self) -> dict[str, Any]:
        tag = self.encoder_tag_ or {}
        return {
            "ldgan": self.branch.extra_state(),
            "selection": self.selection_,
            "seed": self._seed,
            "candidates": self.candidates,
            "encoder": tag.get("encoder"),
            "encoder_weights": tag.get("weights"),
            "encoder_weights_sha256": tag.get("weights_sha256"),
            "encoder_weights_file": ENCODERS[self.encoder].weights_file if tag else None,
            "dims": {b: int(m.shape[0]) for b, (m, _) in self.scalers_.items()},
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.branch.load_extra_state(state.get("ldgan", {}))
        self.selection_ = dict(state.get("selection", {}))
        self._seed = int(state.get("seed", 0))
        if state.get("encoder") not in (None, self.encoder):
            raise CheckpointError(
                f"{self.name}: saved with encoder {state['encoder']!r}, configured {self.encoder!r}"
            )
        if state.get("encoder_weights_sha256"):
            self.encoder_tag_ = {
                "encoder": state["encoder"],
                "weights": state.get("encoder_weights"),
                "weights_sha256": state["encoder_weights_sha256"],
            }


def _drop_recon(branches: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v for k, v in branches.items() if k != "recon"}


def _scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """StandardScaler statistics (population std; constant dimensions get scale 1)."""
    scale = X.std(axis=0)
    return X.mean(axis=0), np.where(scale > 1e-12, scale, 1.0)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
