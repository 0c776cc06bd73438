"""LDGAN system: the log-mel reconstruction branch of TLDiffGAN, with TMixup.

The system is a thin shell over `ldgan_branch.MelBranch`, the glue around the `LDGAN` module
that both this system and TLDiffGAN use; here are its hyperparameters and their checks.
Every interpretation of the paper is argued in ``docs/tldiffgan.md``.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from ..data.clip import Clip
from ..engine import RunContext
from ..errors import ConfigError
from ..features.extract import Decoded, FeatureRequest, MelStore, logmels
from ..models.ldgan.diffusion import SCHEDULES
from ..models.ldgan.model import PREDICTIONS, REDUCTIONS
from ..models.ldgan.networks import GP_KINDS
from ..models.ldgan.scorer import LDGANScorer
from .base import Explanation, System, register
from .export_plan import ExportPlan, batch_dim, clip_samples
from .ldgan_branch import MelBranch
from .params import check_params

AUX_LABELS = ("section_attributes", "section", "none")
LDGAN_RULES: dict[str, Any] = {
    "n_frames": "[1, inf)",
    "n_mels": "[1, inf)",
    "log_floor": ("max", "add"),
    "ae_channels": "[1, inf)",
    "latent_channels": "[1, inf)",
    "n_down": "[0, 8]",
    "gen_channels": "[1, inf)",
    "gen_blocks": "[0, inf)",
    "disc_channels": "[1, inf)",
    "n_steps": "[1, inf)",
    "schedule": SCHEDULES,
    "beta_min": "(0, inf)",
    "beta_max": "(0, inf)",
    "prediction": PREDICTIONS,
    "x0_clip": "(0, inf)",
    "gp_type": GP_KINDS,
    "gp_weight": "[0, inf)",
    "w_pred": "[0, inf)",
    "w_stat": "[0, inf)",
    "w_adv": "[0, inf)",
    "aux_labels": AUX_LABELS,
    "aux_weight": "[0, inf)",
    "tmixup_alpha": "(0, inf)",
    "tau_low": "[0, 1]",
    "tau_high": "[0, 1]",
    "score_step": "[0, inf)",
    "score_draws": "[1, inf)",
    "score_seed": "[0, inf)",
    "score_reduction": REDUCTIONS,
    "score_topk": "(0, 1]",
    "epochs": "[1, inf)",
    "batch_size": "[1, inf)",
    "learning_rate": "(0, inf)",
    "adam_beta1": "[0, 1)",
    "adam_beta2": "[0, 1)",
}


def check_ldgan_params(owner: str, params: Mapping[str, Any]) -> None:
    """Types and ranges of LDGAN hyperparameters, and the rules that tie two of them."""
    check_params(owner, typing.get_type_hints(LDGANSystem.__init__), params, LDGAN_RULES)
    if params["score_step"] > params["n_steps"]:
        raise ConfigError(
            f"{owner}: score_step must be in [0, n_steps={params['n_steps']}], "
            f"got {params['score_step']}"
        )
    if params["tau_low"] > params["tau_high"]:
        raise ConfigError(
            f"{owner}: need tau_low <= tau_high, got {params['tau_low']}, {params['tau_high']}"
        )


@register
class LDGANSystem(System):
    """Latent diffusion-GAN reconstruction of log-mels (TLDiffGAN's mel branch)."""

    name = "ldgan"
    description = (
        "TLDiffGAN mel branch: latent diffusion-GAN reconstruction + TMixup (anomaly maps)"
    )
    smoke_params: ClassVar[
        dict[str, Any]
    ] = {  # the CPU config (configs/ldgan_cpu.yaml), 2 epochs on 32-frame windows
        "ae_channels": 32,
        "latent_channels": 8,
        "gen_channels": 32,
        "disc_channels": 32,
        "epochs": 2,
        "batch_size": 4,
        "learning_rate": 0.001,
        "n_frames": 32,
    }
    no_export = None

    # the hyperparameters read here (`_set_params` stores every one; `MelBranch` reads the rest)
    score_step: int
    score_reduction: str

    def __init__(
        self,
        *,
        n_frames: int = 313,
        n_mels: int = 128,
        log_floor: str = "max",
        latent_diffusion: bool = True,
        tmixup: bool = True,
        ae_channels: int = 64,
        latent_channels: int = 16,
        n_down: int = 2,
        gen_channels: int = 64,
        gen_blocks: int = 2,
        disc_channels: int = 64,
        n_steps: int = 4,
        schedule: str = "vp",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        prediction: str = "eps",
        x0_clip: float = 5.0,
        gp_type: str = "r1",
        gp_weight: float = 10.0,
        w_pred: float = 1.0,
        w_stat: float = 1.0,
        w_adv: float = 0.1,
        aux_labels: str = "section_attributes",
        aux_weight: float = 0.1,
        tmixup_alpha: float = 0.2,
        tau_low: float = 0.2,
        tau_high: float = 0.5,
        score_step: int = 2,
        score_draws: int = 1,
        score_seed: int = 0,
        score_reduction: str = "mean",
        score_topk: float = 0.1,
        epochs: int = 150,
        batch_size: int = 512,
        learning_rate: float = 1e-4,
        adam_beta1: float = 0.5,
        adam_beta2: float = 0.9,
    ) -> None:
        params = {k: v for k, v in locals().items() if k != "self"}
        check_ldgan_params(self.name, params)
        self._set_params(params)
        self.branch = MelBranch(params)

    def feature_request(self) -> FeatureRequest:
        return FeatureRequest(logmel=self.branch.logmel_params)

    def fit(
        self,
        train_clips: Sequence[Clip],
        val: Sequence[Clip] | None = None,
        ctx: RunContext | None = None,
    ) -> LDGANSystem:
        """Train on normal clips, then fit the threshold (`System.fit_threshold`)."""
        del val  # nothing is selected on validation data in the mel branch
        ctx = self._begin_fit(train_clips, ctx)
        store, _ = MelStore.from_clips(
            train_clips,
            self.feature_request(),
            ctx.cache_dir,
            ctx.progress,
            spill_dir=ctx.cache_dir,
        )
        mels, kept = store.mels(), store.clips
        assert kept is not None  # `from_clips` keeps the clips it decoded
        self.branch.fit(mels, kept, ctx, self.fingerprint(train_clips, ctx), f"train {self.name}")
        self.fit_threshold(self.branch.evaluate(mels, ctx).scores, kept, ctx)
        return self

    def score_decoded(self, decoded: Decoded, ctx: RunContext) -> np.ndarray:
        return self.branch.evaluate(decoded.logmels, ctx).scores  # type: ignore[arg-type]

    def explain_decoded(self, decoded: Decoded, ctx: RunContext) -> Explanation:
        return self.branch.explain(decoded.logmels[0], ctx)  # type: ignore[index]

    def scoring_module(self, frames: int | None = None) -> LDGANScorer:
        """`MelBranch.scoring_module`: with ``frames``, the scoring noise of that clip length."""
        return self.branch.scoring_module(frames, embedding=False)

    def export_plan(
        self, seconds: float | None = None, ctx: RunContext | None = None
    ) -> ExportPlan:
        """One clip length (``seconds``, default 10): the scoring noise is fixed per length."""
        self.refuse_export()
        samples = clip_samples(seconds)
        params = self.branch.logmel_params
        frames = params.n_frames(samples)
        example = torch.randn(2, params.n_mels, frames)
        details = {"score_reduction": self.score_reduction, "score_step": self.score_step}
        return ExportPlan(
            self.scoring_module(frames),
            {"logmel": example},
            {"logmel": {0: batch_dim()}},
            {"logmel": params},
            ["score", "anomaly_map"],
            samples,
            details,
        )

    def mel_embedding(self, clips: Sequence[Clip], ctx: RunContext | None = None) -> np.ndarray:
        """Attention-pooled latent of each (unmixed) clip: (n, latent_channels) float32."""
        ctx = ctx or RunContext()
        return self.branch.evaluate(
            logmels(clips, self.branch.logmel_params, ctx.cache_dir, ctx.progress), ctx
        ).embeddings

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return self.branch.state_tensors()

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.branch.load_state_tensors(tensors)

    def extra_state(self) -> dict[str, Any]:
        return self.branch.extra_state()

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.branch.load_extra_state(state)
