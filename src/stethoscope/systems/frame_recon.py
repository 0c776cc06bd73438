"""Shared machinery of frame-level reconstruction systems (the DCASE AE, GammaVAE).

Clips become log-mels held once in a `FrameBank`; 5-frame vectors are gathered per batch and
trained by the engine's loop. Scores follow the official DCASE 2023-2025 AE code:

* ``mse``: mean squared error over all of a clip's vectors and dimensions.
* ``mahala``: residuals ``x - x_hat`` give a covariance for the source domain and one for the
  target domain (each batch centred on its own mean, summed, divided by n - 1, as the
  official code does); a clip's score is the squared Mahalanobis norm of its *mean*
  residual under each precision, the smaller of the two. (The official code computes
  ``mean(D P D^T)`` over the clip's residual matrix D, which equals that quantity.)

The scoring maths is `models.frame_recon.FrameReconScorer` (`scoring_module`): `score`
streams the vectors through its reconstruction in fixed-size chunks and reduces with its
`score_from_stats`; `explain` and the ONNX export run it whole.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..data.clip import Clip
from ..engine import OptimiserSpec, RunContext, train
from ..features.extract import Decoded, FeatureRequest, FrameBank
from ..features.logmel import LogMelParams
from ..models.frame_recon import FrameReconScorer
from .base import Explanation, System
from .export_plan import ExportPlan, batch_dim

SCORE_MODES = ("mse", "mahala")


class FrameReconstructionSystem(System):
    """Base for systems that reconstruct stacked log-mel vectors. Subclasses give the model
    (`build_model`, whose ``forward`` returns per-vector training losses, and whose
    ``reconstruct`` is used for scoring); the scoring maths is `FrameReconScorer`'s."""

    no_export = None

    param_rules: ClassVar[dict[str, Any]] = {
        "score_mode": SCORE_MODES,
        "epochs": "[1, inf)",
        "batch_size": "[2, inf)",
        "learning_rate": "(0, inf)",
        "n_frames": "[1, inf)",
        "n_mels": "[1, inf)",
        "log_floor": ("max", "add"),
    }

    # hyperparameters: the constructor's arguments, stored by `_set_params`
    score_mode: str
    epochs: int
    batch_size: int
    learning_rate: float
    n_frames: int
    n_mels: int
    log_floor: str

    def __init__(
        self,
        *,
        score_mode: str = "mse",
        epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        n_frames: int = 5,
        n_mels: int = 128,
        log_floor: str = "max",
    ) -> None:
        self._set_params(locals())
        self.model: nn.Module | None = None
        self.precision_source_: torch.Tensor | None = None
        self.precision_target_: torch.Tensor | None = None
        self.history_: list[float] = []
        self.epoch_seconds_: list[float] = []

    # -- what subclasses provide ------------------------------------------------------
    @abstractmethod
    def build_model(self, input_dim: int) -> nn.Module:
        """A fresh model for ``input_dim``-dimensional vectors."""

    def score_latent_choice(self) -> str | None:
        """The latent the model decodes when scoring (None: the model has one way)."""
        return None

    def scoring_module(self) -> FrameReconScorer:
        """The scoring network (`models.frame_recon.FrameReconScorer`) around this system's
        fitted model (shared, not copied) and residual precisions."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        return FrameReconScorer(
            self.model,
            self.n_frames,
            self.score_mode,
            self.precision_source_,
            self.precision_target_,
            self.score_latent_choice(),
        )

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction used for scoring (eval mode)."""
        return self.scoring_module().reconstruct(x)

    # -- features ---------------------------------------------------------------------
    @property
    def logmel_params(self) -> LogMelParams:
        return LogMelParams(n_mels=self.n_mels, log_floor=self.log_floor)

    def feature_request(self) -> FeatureRequest:
        return FeatureRequest(logmel=self.logmel_params, min_frames=self.n_frames)

    # -- training ---------------------------------------------------------------------
    def fit(
        self,
        train_clips: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> FrameReconstructionSystem:
        del val  # reconstruction systems select nothing on validation data
        ctx = self._begin_fit(train_clips, ctx)
        bank = FrameBank.from_clips(
            train_clips, self.logmel_params, self.n_frames, ctx.cache_dir, ctx.progress
        )
        self.model = self.build_model(bank.dim).to(ctx.torch_device)

        def batches(generator: torch.Generator) -> Iterator[tuple[torch.Tensor]]:
            order = torch.randperm(len(bank), generator=generator)
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                if len(idx) > 1:  # BatchNorm needs two samples; the official code skips too
                    yield (bank.vectors(idx),)

        result = train(
            self.model,
            batches,
            self.epochs,
            OptimiserSpec(self.learning_rate),
            ctx,
            self.fingerprint(train_clips, ctx),
            name=f"train {self.name}",
        )
        self.history_ = [h["loss"] for h in result.history]
        self.epoch_seconds_ = [h["seconds"] for h in result.history]
        kept = bank.clips or train_clips  # the clips the audio checks kept, in the bank's order
        self._fit_covariances(bank, kept, ctx)
        self.fit_threshold(self._score_bank(bank, ctx), kept, ctx)
        return self

    @torch.no_grad()
    def _fit_covariances(self, bank: FrameBank, clips: Sequence[Clip], ctx: RunContext) -> None:
        """Residual covariances per domain, batch-centred in a shuffled order as the official
        code."""
        self._model_device(ctx)
        target = torch.tensor([c.is_target for c in clips])[bank.clip_index]
        order = torch.randperm(len(bank), generator=ctx.generator(offset=3, device="cpu"))
        dim = bank.dim
        sums = {
            False: torch.zeros(dim, dim, dtype=torch.float64),
            True: torch.zeros(dim, dim, dtype=torch.float64),
        }
        counts = {False: 0, True: 0}
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            x = ctx.to_device(bank.vectors(idx))
            diff = (x - self.reconstruct(x)).double().cpu()
            for is_target in (False, True):
                part = diff[target[idx] == is_target]
                if len(part):
                    centred = part - part.mean(dim=0)
                    sums[is_target] += centred.T @ centred
                    counts[is_target] += len(part)
        covs = {k: sums[k] / max(counts[k] - 1, 1) for k in sums}
        if counts[False] == 0:
            covs[False] = covs[True]
        if counts[True] == 0:
            covs[True] = covs[False]
        self.precision_source_ = _precision(covs[False])
        self.precision_target_ = _precision(covs[True])

    # -- scoring ----------------------------------------------------------------------
    def _model_device(self, ctx: RunContext) -> torch.device:
        """The run's device, moving the model there (and into eval mode) only when needed."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        device = ctx.torch_device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        if self.model.training:  # eval() walks every submodule: only when needed (hot path)
            self.model.eval()
        return device

    @torch.no_grad()
    def _residual_stats(
        self, bank: FrameBank, ctx: RunContext, chunk: int = 4096
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per clip: mean squared error and mean residual vector.

        Vectors go through the model in fixed-size chunks whatever the clip boundaries (BatchNorm
        is in eval mode, so each vector's output is its own) and are summed per clip: equal-size
        allocations keep the allocator from fragmenting, which per-clip batches did on 1,000+ clips.
        """
        self._model_device(ctx)
        n_clips = int(bank.clip_index[-1]) + 1
        sq_sum = torch.zeros(n_clips, dtype=torch.float64)
        diff_sum = torch.zeros(n_clips, bank.dim, dtype=torch.float64)
        for start in range(0, len(bank), chunk):
            idx = torch.arange(start, min(start + chunk, len(bank)))
            x = ctx.to_device(bank.vectors(idx))
            diff = (x - self.reconstruct(x)).cpu().double()
            owner = bank.clip_index[idx]
            sq_sum.index_add_(0, owner, diff.pow(2).mean(dim=1))
            diff_sum.index_add_(0, owner, diff)
        counts = torch.bincount(bank.clip_index, minlength=n_clips).double()
        return (sq_sum / counts).numpy(), (diff_sum / counts[:, None]).numpy()

    def _scores_from_stats(self, mse: np.ndarray, mean_diff: np.ndarray) -> np.ndarray:
        scorer = self.scoring_module()
        return scorer.score_from_stats(torch.from_numpy(mse), torch.from_numpy(mean_diff)).numpy()

    def _score_bank(self, bank: FrameBank, ctx: RunContext) -> np.ndarray:
        return self._scores_from_stats(*self._residual_stats(bank, ctx))

    def score_decoded(self, decoded: Decoded, ctx: RunContext) -> np.ndarray:
        return self._score_bank(FrameBank(decoded.logmels, self.n_frames), ctx)  # type: ignore[arg-type]

    @torch.no_grad()
    def explain_decoded(self, decoded: Decoded, ctx: RunContext) -> Explanation:
        """One forward pass of the scoring module gives the score, the reconstruction and the
        squared residual per (mel, frame), the last two averaged over the vectors covering each."""
        mel = decoded.logmels[0]  # type: ignore[index]
        device = self._model_device(ctx)
        scorer = self.scoring_module().to(device)
        score, amap, rec = scorer.explain(ctx.to_device(torch.from_numpy(mel)[None]))
        return Explanation(
            score=float(score[0]),
            logmel=mel,
            reconstruction=rec[0].cpu().numpy(),
            anomaly_map=amap[0].cpu().numpy(),
        )

    # -- export -----------------------------------------------------------------------
    def export_refusal(self) -> str | None:
        latent = self.score_latent_choice()
        if latent not in (None, "mean"):
            return (
                f"{self.name} with score_latent={latent!r} scores a random latent sample; "
                f"ONNX export needs score_latent=mean"
            )
        return super().export_refusal()

    def export_plan(
        self, seconds: float | None = None, ctx: RunContext | None = None
    ) -> ExportPlan:
        """Any clip length (``seconds`` unused): the vectors are stacked in the graph."""
        del seconds
        self.refuse_export()
        frames = torch.export.Dim("frames", min=self.n_frames)
        example = torch.randn(2, self.n_mels, self.n_frames + 11)
        return ExportPlan(
            self.scoring_module(),
            {"logmel": example},
            {"logmel": {0: batch_dim(), 2: frames}},
            {"logmel": self.logmel_params},
            ["score", "anomaly_map"],
            details={"score_mode": self.score_mode, "n_frames": self.n_frames},
        )

    # -- persistence ------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.model is None:
            raise RuntimeError(f"{self.name}: nothing to save, the system is not fitted")
        state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        state["precision_source"] = self.precision_source_
        state["precision_target"] = self.precision_target_
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        dim = tensors["precision_source"].shape[0]
        self.model = self.build_model(dim)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.model.eval()
        self.precision_source_ = tensors["precision_source"].double()
        self.precision_target_ = tensors["precision_target"].double()

    def extra_state(self) -> dict[str, Any]:
        return {"history": self.history_, "epoch_seconds": self.epoch_seconds_}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.history_ = list(state.get("history", []))
        self.epoch_seconds_ = list(state.get("epoch_seconds", []))


def _precision(cov: torch.Tensor) -> torch.Tensor:
    """Inverse covariance, as the official code; the pseudo-inverse when the covariance is
    (numerically) singular, e.g. fewer residual vectors than dimensions on tiny data sets,
    where a plain inverse returns garbage that can even make distances negative."""
    eig = torch.linalg.eigvalsh(cov)
    if eig.min() > eig.max() * 1e-10:
        return torch.linalg.inv(cov)
    return torch.linalg.pinv(cov, hermitian=True, rtol=1e-10)
