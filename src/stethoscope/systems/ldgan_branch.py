"""The LDGAN mel branch (`MelBranch`), shared by the `ldgan` and `tldiffgan` systems.

`MelBranch` is the glue around the `LDGAN` module: log-mels standardised per mel bin (training
mean/std, saved), random ``n_frames`` crops for training, auxiliary classes from
section/attributes, and fixed scoring noise. Clips are scored at their full length (the nets
are fully convolutional in time). Training runs in the engine's loop; scoring is one pass of
the scoring module (`models.ldgan.scorer.LDGANScorer`, also what the ONNX export runs) per
batch, which gives the score, the anomaly map, the reconstruction, the mel embedding and the
attention together. Not a system: nothing here is registered.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..data.clip import Clip
from ..engine import OptimiserSpec, RunContext, train
from ..features.logmel import LogMelParams
from ..models.ldgan import LDGAN, LDGANConfig
from ..models.ldgan.scorer import LDGANScorer
from .base import Explanation


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
