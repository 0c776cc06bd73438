"""Frozen pretrained encoder + outlier detector on clip embeddings (no training of weights).

fit: embed the normal training clips (cached), fit the detector (KNN by default, or LOF,
GMM, SOS, Mahalanobis), and fit the DCASE gamma threshold. By default (``threshold_fit:
crossfit``) it is fitted to held-out scores: per fold, a detector fitted on the other folds'
embeddings scores the fold (the encoder is frozen, so only the detector is refitted: no
extra encoding). ``in_sample`` uses the detector's *training* scores: leave-one-out for
KNN / LOF / SOS (a training clip is not its own neighbour), plain in-sample for GMM /
Mahalanobis (optimistic, so the threshold is low).

There is no silent fallback: if the pretrained weights are missing the encoder raises
`CheckpointError`; random weights are used only when ``encoder="random"`` is chosen.
Saved state: the detector's training matrix (+ scaler statistics) as tensors, and the
encoder's name / weights kind / weights file name and sha256 as JSON (never a path); a reload
refits the detector deterministically and finds the encoder's weights by that sha256 in the
run's weights folders (`encoders.locate_encoder_weights`), whatever the file is called there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..data.clip import Clip
from ..detectors import get_detector
from ..detectors.embedding import DETECTORS, TrainingSetDetector
from ..detectors.module import DetectorModule
from ..encoders import (
    embed_clips,
    embed_decoded,
    encoder_tag,
    fitted_encoder_on,
    restore_encoder_tag,
    saved_encoder_tag,
)
from ..encoders.base import Encoder
from ..engine import RunContext
from ..errors import CheckpointError, ConfigError
from ..features.extract import Decoded, FeatureRequest, iter_decoded
from ..models.embedding import EmbeddingScorer, encoder_refusal
from .base import System, register
from .export_plan import EFFICIENTAT_MEL, ExportPlan, batch_dim


@register
class EmbeddingKNNSystem(System):
    """Pretrained waveform embeddings (EfficientAT mn04 by default) + k-NN distance."""

    name = "embedding_knn"
    description = "frozen pretrained encoder embeddings + KNN / LOF / GMM / SOS / Mahalanobis"
    smoke_params: ClassVar[dict[str, Any]] = {"encoder": "random", "detector": "gmm"}
    no_export = None

    param_rules: ClassVar[dict[str, Any]] = {
        "n_neighbors": "[1, inf)",
        "detector": tuple(DETECTORS),
    }

    # hyperparameters: the constructor's arguments, stored by `_set_params`
    encoder: str
    detector: str
    n_neighbors: int
    standardize: bool

    def __init__(
        self,
        *,
        encoder: str = "efficientat_mn04",
        detector: str = "knn",
        n_neighbors: int = 2,
        standardize: bool = True,
    ) -> None:
        self._set_params(locals())
        self.detector_: TrainingSetDetector | None = None
        self.encoder_tag_: dict[str, Any] | None = None
        self._encoder: tuple[str, Encoder] | None = None  # (device, encoder)
        self._seed = 0  # the fitting run's seed (GMM initialisation)

    # -- pieces -----------------------------------------------------------------------
    def _get_encoder(self, ctx: RunContext) -> Encoder:
        self._encoder = fitted_encoder_on(
            self._encoder,
            self.encoder,
            self.encoder_tag_,
            ctx.device,
            ctx.weights_dirs,
            self.weights_hint_,
        )
        return self._encoder[1]

    def _detector_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"standardize": self.standardize}
        cls = DETECTORS[self.detector]
        if "n_neighbors" in cls.param_names:
            params["n_neighbors"] = self.n_neighbors
        if "seed" in cls.param_names:
            params["seed"] = self._seed
        return params

    def feature_request(self) -> FeatureRequest:
        return FeatureRequest(wave=True)

    def embed(self, clips: Sequence[Clip], ctx: RunContext | None = None) -> np.ndarray:
        """(n, dim) clip embeddings from the (cached) encoder."""
        ctx = ctx or RunContext()
        return embed_clips(
            self._get_encoder(ctx), clips, cache_dir=ctx.cache_dir, progress=ctx.progress
        )

    # -- System contract --------------------------------------------------------------
    def fit(
        self,
        train: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> EmbeddingKNNSystem:
        del val  # nothing is selected on validation data here
        ctx = self._begin_fit(train, ctx)
        self._seed = ctx.seed
        encoder = self._get_encoder(ctx)
        kept: list[Clip] = []  # the clips the audio checks kept, in the order of their embeddings
        parts = []
        for part in iter_decoded(train, self.feature_request(), ctx.cache_dir, ctx.progress):
            kept += part.clips  # type: ignore[arg-type]
            parts.append(embed_decoded(encoder, part, ctx.cache_dir))
        if not kept:
            raise ConfigError(
                f"{self.name}: all {len(train)} training clips were left out by the audio checks"
            )
        X = np.concatenate(parts)
        self.encoder_tag_ = encoder_tag(encoder)
        detector = get_detector(self.detector, **self._detector_params())
        assert isinstance(detector, TrainingSetDetector)  # every `DETECTORS` entry is one
        self.detector_ = detector.fit(X)
        self.fit_threshold(
            self.detector_.train_scores(),
            kept,
            ctx,
            minimum=detector.min_train,
            heldout=lambda folds: self._heldout_scores(X, folds),
        )
        return self

    def _heldout_scores(self, X: np.ndarray, folds: Sequence[np.ndarray]) -> np.ndarray:
        """Each fold's embeddings scored by a detector (and scaler) fitted on the other folds'."""
        out = np.zeros(len(X))
        for held in folds:
            rest = np.setdiff1d(np.arange(len(X)), held)
            out[held] = (
                get_detector(self.detector, **self._detector_params()).fit(X[rest]).score(X[held])
            )
        return out

    def score_decoded(self, decoded: Decoded, ctx: RunContext) -> np.ndarray:
        if self.detector_ is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        return self.detector_.score(embed_decoded(self._get_encoder(ctx), decoded, ctx.cache_dir))

    # -- scoring module and export ----------------------------------------------------
    def scoring_module(self, ctx: RunContext | None = None) -> EmbeddingScorer:
        """The encoder's network on its mel, then the fitted detector as a torch module
        (`models.embedding.EmbeddingScorer`; `score` runs the same encoder and detector)."""
        if self.detector_ is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        encoder = self._get_encoder(ctx or RunContext())
        return EmbeddingScorer(encoder, DetectorModule(self.detector_))

    def export_refusal(self) -> str | None:
        return encoder_refusal(self.name, self.encoder) or super().export_refusal()

    def export_plan(
        self, seconds: float | None = None, ctx: RunContext | None = None
    ) -> ExportPlan:
        """Any clip length (``seconds`` unused): the encoder pools over time."""
        del seconds
        self.refuse_export()
        ctx = ctx or RunContext()
        module = self.scoring_module(ctx)
        details = {
            "detector": self.detector,
            "encoder": self.encoder,
            "encoder_weights": self._get_encoder(ctx).weights,
        }
        return ExportPlan(
            module,
            {"mn04_mel": torch.randn(2, 128, 101)},
            {"mn04_mel": {0: batch_dim(), 2: torch.export.Dim("frames", min=32)}},
            {"mn04_mel": EFFICIENTAT_MEL},
            ["score"],
            details=details,
        )

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.detector_ is None:
            raise RuntimeError(f"{self.name}: nothing to save, the system is not fitted")
        return {
            f"detector.{k}": torch.from_numpy(np.ascontiguousarray(v))
            for k, v in self.detector_.state().items()
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        state = {
            k[len("detector.") :]: v.numpy()
            for k, v in tensors.items()
            if k.startswith("detector.")
        }
        if "train" not in state:
            raise CheckpointError(f"{self.name}: saved weights hold no detector training matrix")
        self.detector_ = DETECTORS[self.detector].from_state(state, **self._detector_params())

    def extra_state(self) -> dict[str, Any]:
        return {
            **saved_encoder_tag(self.encoder_tag_),
            "embedding_dim": (self.encoder_tag_ or {}).get("dim"),
            "detector": self.detector,
            "detector_params": self._detector_params(),
            "seed": self._seed,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._seed = int(state.get("seed", 0))
        tag = restore_encoder_tag(self.name, self.encoder, state)
        if tag is not None:
            self.encoder_tag_ = {**tag, "dim": state.get("embedding_dim")}
