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

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..data.clip import Clip
from ..detectors.embedding import DETECTORS, TrainingSetDetector
from ..detectors.module import DetectorModule
from ..encoders import embed_decoded, encoder_tag, fitted_encoder_on
from ..encoders.base import Encoder
from ..engine import RunContext
from ..errors import ConfigError
from ..features.extract import Decoded, FeatureRequest, MelStore, iter_decoded
from ..models.embedding import EncoderNet, encoder_refusal
from ..models.mel_stats import DEFAULT_STATS, MelStatsFeatures, features_of
from ..models.tldiffgan import FusionScorer, TLDiffGANScorer
from .base import Explanation, System, register
from .export_plan import ExportPlan, clip_samples
from .ldgan import LDGANSystem
from .ldgan_branch import BranchEval, MelBranch
from .registry import part_params
from .tldiffgan_fusion import (
    ENSEMBLE,
    RECON,
    Scalers,
    check_candidates,
    fit_fusion,
    fuse_branches,
    loo_ensemble,
    plan_export,
    select_scorer,
)
from .tldiffgan_state import (
    restore_extra_state,
    restore_tensors,
    saved_extra_state,
    saved_tensors,
)

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
        check_candidates(list(detectors), selection)
        mel_params = part_params(self.name, "ldgan", LDGANSystem, ldgan)
        self._set_params({**own, "ldgan": mel_params})
        self.branch = MelBranch(mel_params)
        self._encoder: tuple[str, Encoder] | None = None  # (device, encoder)
        self.encoder_tag_: dict[str, Any] | None = None
        self.scalers_: Scalers = {}
        self.joint_train_: np.ndarray | None = None
        self.detectors_: dict[str, TrainingSetDetector] = {}
        # candidate -> held-out scores of the training clips
        self.reference_: dict[str, np.ndarray] = {}
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
        self._encoder = fitted_encoder_on(
            self._encoder,
            self.encoder,
            self.encoder_tag_,
            ctx.device,
            ctx.weights_dirs,
            self.weights_hint_,
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

    def _fuse(self, branches: dict[str, np.ndarray], scalers: Scalers) -> np.ndarray:
        """The joint embedding of ``branches`` under ``scalers`` (`fuse_branches`)."""
        return fuse_branches(branches, scalers, self.balance_branches)

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
        self.scalers_, self.joint_train_, self.detectors_, heldout = fit_fusion(
            branches,
            self._detector,
            self.detectors,
            self.holdout_fraction,
            self._seed,
            self.balance_branches,
        )
        self.reference_ = {RECON: np.asarray(mel.scores, np.float64), **heldout}
        self.selection_ = self._select(val, ctx)
        chosen = self.selection_["chosen"]
        in_sample = self._loo_ensemble() if chosen == ENSEMBLE else self.reference_[chosen]
        self.fit_threshold(in_sample, kept, ctx, minimum=MIN_TRAIN_CLIPS)
        return self

    def fold_params(self) -> dict[str, Any]:
        """Threshold folds score with the scorer this fit chose (no selection of their own)."""
        return {**super().fold_params(), "selection": self.selection_["chosen"]}

    def _select(self, val: Sequence[Clip] | None, ctx: RunContext) -> dict[str, Any]:
        """Which scorer `score` uses, and why (`tldiffgan_fusion.select_scorer`)."""
        return select_scorer(
            self.selection,
            self.candidates,
            val,
            lambda clips: self.candidate_scores(clips, ctx=ctx),
        )

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

    def _loo_ensemble(self) -> np.ndarray:
        """The ensemble's leave-one-out scores of the training clips (`loo_ensemble`)."""
        return loo_ensemble(self.reference_, self.candidates)

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
        module = self.scoring_module(params.n_frames(samples), ctx)
        return plan_export(module, params, samples, self.use_wave_branch, self.selection_["chosen"])

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

    # -- persistence (`tldiffgan_state`: tensor names and config keys) ----------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return saved_tensors(self)

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        restore_tensors(self, tensors)

    def extra_state(self) -> dict[str, Any]:
        return saved_extra_state(self)

    def load_extra_state(self, state: dict[str, Any]) -> None:
        restore_extra_state(self, state)


def _drop_recon(branches: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v for k, v in branches.items() if k != "recon"}
