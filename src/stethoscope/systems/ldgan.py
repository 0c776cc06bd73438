"""LDGAN system: the log-mel reconstruction branch of TLDiffGAN, with TMixup.

`MelBranch` is the glue around the `LDGAN` module that both this system and TLDiffGAN use:
log-mels standardised per mel bin (training mean/std, saved), random ``n_frames`` crops for
training, auxiliary classes from section/attributes, and fixed scoring noise. Clips are
scored at their full length (the nets are fully convolutional in time). Training runs in
the engine's loop; scoring is one pass of the scoring module (`models.ldgan.scorer.LDGANScorer`,
also what the ONNX export runs) per batch, which gives the score, the anomaly map, the
reconstruction, the mel embedding and the attention together.
Every interpretation of the paper is argued in ``docs/tldiffgan.md``.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data.clip import Clip
from ..engine import OptimiserSpec, RunContext, train
from ..errors import ConfigError
from ..features.extract import Decoded, FeatureRequest, MelStore, logmels
from ..features.logmel import LogMelParams
from ..models.ldgan import LDGAN, LDGANConfig
from ..models.ldgan.diffusion import SCHEDULES
from ..models.ldgan.model import PREDICTIONS, REDUCTIONS
from ..models.ldgan.networks import GP_KINDS
from ..models.ldgan.scorer import LDGANScorer
from .base import Explanation, System, register
from .export_plan import ExportPlan, batch_dim, clip_samples
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


class BranchEval(NamedTuple):
    """Per-clip outputs of `MelBranch.evaluate` (maps only when asked for)."""

    scores: np.ndarray  # (n,)
    embeddings: np.ndarray  # (n, latent_channels) float32
    maps: list[np.ndarray] | None  # standardised squared error (n_mels, frames) per clip
    maps_db: list[np.ndarray] | None  # the same in dB² (the anomaly map)
    reconstructions: list[np.ndarray] | None  # reconstruction in dB (n_mels, frames) per clip
    attention: list[np.ndarray] | None  # (frames,) per clip


class MelBranch:
    """An LDGAN and what surrounds it; ``hp`` are the LDGAN hyperparameters (`LDGANSystem`'s)."""

    def __init__(self, hp: Mapping[str, Any]) -> None:
        self.hp = dict(hp)
        self.model: LDGAN | None = None
        self.mel_mean_: torch.Tensor | None = None
        self.mel_std_: torch.Tensor | None = None
        self.classes_: list[str] = []
        self.history_: list[dict[str, float]] = []

    @property
    def logmel_params(self) -> LogMelParams:
        return LogMelParams(n_mels=self.hp["n_mels"], log_floor=self.hp["log_floor"])

    def build_model(self, n_classes: int) -> LDGAN:
        names = {f.name for f in dataclasses.fields(LDGANConfig)}
        return LDGAN(
            LDGANConfig(**{k: v for k, v in self.hp.items() if k in names}, n_classes=n_classes)
        )

    def class_key(self, clip: Clip) -> str:
        """Auxiliary class of a clip: its section (machine id) and, optionally, its attributes."""
        if self.hp["aux_labels"] == "section":
            return clip.section
        return f"{clip.section}|" + ";".join(f"{k}={v}" for k, v in clip.attributes)

    def _standardise(self, mel: np.ndarray) -> torch.Tensor:
        assert self.mel_mean_ is not None and self.mel_std_ is not None
        return (torch.from_numpy(mel) - self.mel_mean_[:, None]) / self.mel_std_[:, None]

    def _crop(self, mel: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """A random ``n_frames`` window of a longer clip, standardised; shorter clips are padded
        with 0 (the mean). Standardised per batch, so that the training set is held once."""
        frames, want = mel.shape[1], self.hp["n_frames"]
        if frames > want:
            start = int(torch.randint(0, frames - want + 1, (1,), generator=generator))
            return self._standardise(mel[:, start : start + want])
        return F.pad(self._standardise(mel), (0, want - frames))

    def _fit_statistics(self, mels: Sequence[np.ndarray]) -> None:
        """Per-mel-bin mean and std over every training frame, streamed clip by clip in float64
        (two passes, as numpy's std), so that no copy of the training set is made."""
        total = sum(m.shape[1] for m in mels)
        sums = np.zeros(mels[0].shape[0])
        for m in mels:
            sums += m.sum(axis=1, dtype=np.float64)
        mean = sums / total
        squares = np.zeros_like(mean)
        for m in mels:
            squares += np.square(m.astype(np.float64) - mean[:, None]).sum(axis=1)
        self.mel_mean_ = torch.from_numpy(mean).float()
        self.mel_std_ = torch.from_numpy(np.sqrt(squares / total)).float().clamp_min(1e-2)

    # -- training ---------------------------------------------------------------------
    def fit(
        self,
        mels: Sequence[np.ndarray],
        clips: Sequence[Clip],
        ctx: RunContext,
        fingerprint: str,
        name: str,
    ) -> None:
        """Standardisation statistics, auxiliary classes, then the engine's training loop."""
        self._fit_statistics(mels)
        keys = [self.class_key(c) for c in clips]
        self.classes_ = sorted(set(keys)) if self.hp["aux_labels"] != "none" else []
        n_classes = len(self.classes_) if len(self.classes_) > 1 else 0
        labels = (
            torch.tensor([self.classes_.index(k) for k in keys])
            if n_classes
            else torch.zeros(len(clips), dtype=torch.long)
        )
        if self.hp["tmixup"] and not n_classes:
            warnings.warn(
                "ldgan: TMixup is off for this run: the training clips form a single "
                "auxiliary class (section/attributes), so nothing trains the attention "
                "pooling (docs/tldiffgan.md)",
                stacklevel=3,
            )
        self.model = self.build_model(n_classes).to(ctx.torch_device)
        batch_size = self.hp["batch_size"]

        def batches(generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            order = torch.randperm(len(mels), generator=generator)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                x = torch.stack([self._crop(mels[i], generator) for i in idx.tolist()])
                yield x, F.one_hot(labels[idx], max(n_classes, 1)).float()

        spec = OptimiserSpec(
            self.hp["learning_rate"], (self.hp["adam_beta1"], self.hp["adam_beta2"])
        )
        self.history_ = train(
            self.model, batches, self.hp["epochs"], spec, ctx, fingerprint, name
        ).history

    # -- scoring ----------------------------------------------------------------------
    def _noises(self, frames: int, draw: int) -> list[torch.Tensor]:
        """The scoring noise of one clip and draw, fixed by (score_seed, draw, length) and drawn
        on the CPU, so that a clip's score depends neither on its batch nor on the device."""
        assert self.model is not None
        g = torch.Generator().manual_seed(self.hp["score_seed"] * 1_000_003 + draw)
        shape = (self.hp["latent_channels"], self.model.autoencoder.latent_frames(frames))
        return [torch.randn(shape, generator=g) for _ in range(self.hp["score_step"] + 1)]

    def scoring_module(self, frames: int | None = None, embedding: bool = True) -> LDGANScorer:
        """The scoring network around the fitted model (shared, not copied); ``frames``: bake
        in the scoring noise of clips of that length (what ``forward`` uses)."""
        if self.model is None or self.mel_mean_ is None or self.mel_std_ is None:
            raise RuntimeError("ldgan: fit or load the system before scoring")
        diffused = self.hp["score_step"] > 0 and self.hp["latent_diffusion"]
        noises = []
        if diffused and frames:
            noises = [self._noises(frames, d) for d in range(self.hp["score_draws"])]
        return LDGANScorer(self.model, self.mel_mean_, self.mel_std_, noises, embedding)

    @torch.no_grad()
    def evaluate(
        self, mels: Sequence[np.ndarray], ctx: RunContext, maps: bool = False
    ) -> BranchEval:
        """One scoring-module pass (`LDGANScorer.evaluate`) per batch of equal-length clips."""
        if self.model is None:
            raise RuntimeError("ldgan: fit or load the system before scoring")
        device = ctx.torch_device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        self.model.eval()
        scorer = self.scoring_module().to(device)
        n = len(mels)
        scores, emb = np.zeros(n), np.zeros((n, self.hp["latent_channels"]), np.float32)
        pictures: list[Any] = [None] * n  # per clip, with maps: `_pictures`
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, m in enumerate(mels):
            by_length[m.shape[1]].append(i)
        for frames, members in by_length.items():
            draws_cpu = [self._noises(frames, d) for d in range(self.hp["score_draws"])]
            for start in range(0, len(members), self.hp["batch_size"]):
                idx = members[start : start + self.hp["batch_size"]]
                x = ctx.to_device(torch.stack([torch.from_numpy(mels[i]) for i in idx]))
                draws = [
                    [z[None].expand(len(idx), -1, -1).to(device) for z in d] for d in draws_cpu
                ]
                with ctx.autocast():
                    out = scorer.evaluate(x, draws)
                scores[idx] = out.score.float().cpu().numpy()
                emb[idx] = out.embedding.float().cpu().numpy()
                if maps:
                    for j, i in enumerate(idx):
                        pictures[i] = self._pictures(scorer, out, j)
        if not maps:
            return BranchEval(scores, emb, None, None, None, None)
        return BranchEval(scores, emb, *([p[k] for p in pictures] for k in range(4)))

    @staticmethod
    def _pictures(scorer: LDGANScorer, out: Any, j: int) -> tuple[np.ndarray, ...]:
        """Clip ``j``'s (standardised map, map in dB², reconstruction in dB, attention)."""
        amap = out.anomaly_map[j].float()
        rec = scorer.to_db(out.reconstruction[j].float())
        return (
            amap.cpu().numpy(),
            scorer.map_db(amap).cpu().numpy(),
            rec.cpu().numpy(),
            out.attention[j].float().cpu().numpy(),
        )

    def explain(self, mel: np.ndarray, ctx: RunContext) -> Explanation:
        """One clip's score, reconstruction, map (squared error in dB^2) and attention."""
        return self.explain_from(mel, None, self.evaluate([mel], ctx, maps=True))

    def explain_from(self, mel: np.ndarray, score: float | None, out: BranchEval) -> Explanation:
        """`explain` from an `evaluate(..., maps=True)` result of this one clip; ``score``
        replaces the branch's own (a system that scores otherwise, e.g. TLDiffGAN)."""
        assert out.maps is not None and out.maps_db is not None and out.reconstructions is not None
        assert out.attention is not None
        return Explanation(
            score=float(out.scores[0] if score is None else score),
            logmel=mel,
            reconstruction=out.reconstructions[0],
            anomaly_map=out.maps_db[0],
            extras={"attention": out.attention[0], "anomaly_map_standardised": out.maps[0]},
        )

    # -- persistence ------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.model is None or self.mel_mean_ is None or self.mel_std_ is None:
            raise RuntimeError("ldgan: nothing to save, the system is not fitted")
        return {
            **{f"model.{k}": v for k, v in self.model.state_dict().items()},
            "mel_mean": self.mel_mean_,
            "mel_std": self.mel_std_,
        }

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        head = tensors.get("model.aux_head.weight")
        self.model = self.build_model(0 if head is None else head.shape[0])
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.model.eval()
        self.mel_mean_, self.mel_std_ = tensors["mel_mean"].float(), tensors["mel_std"].float()

    def extra_state(self) -> dict[str, Any]:
        return {
            "classes": self.classes_,
            "history": self.history_,
            "tmixup_active": bool(self.model is not None and self.model.tmixup_active),
        }

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.classes_ = list(state.get("classes", []))
        self.history_ = list(state.get("history", []))


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
