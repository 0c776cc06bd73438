"""Shared machinery of frame-level reconstruction systems (the DCASE AE, GammaVAE).

Clips become log-mels held once in a `FrameBank`; 5-frame vectors are gathered per batch.
Scores follow the official DCASE 2023-2025 AE code:

* ``mse``: mean squared error over all of a clip's vectors and dimensions.
* ``mahala``: residuals ``x - x_hat`` give a covariance for the source domain and one for the
  target domain (each batch centred on its own mean, summed, divided by n - 1, as the
  official code does); a clip's score is the squared Mahalanobis norm of its *mean*
  residual under each precision, the smaller of the two. (The official code computes
  ``mean(D P D^T)`` over the clip's residual matrix D, which equals that quantity.)
"""
from __future__ import annotations

import time
from abc import abstractmethod
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.clip import Clip
from ..errors import ConfigError
from ..features.extract import FrameBank, logmel_transform, logmels
from ..features.logmel import LogMelParams
from ..utils import resolve_device, seed_everything
from .base import System

SCORE_MODES = ("mse", "mahala")


class FrameReconstructionSystem(System):
    """Base for systems that reconstruct stacked log-mel vectors. Subclasses give the model
    (`build_model`), its training loss and its reconstruction."""

    def __init__(self, *, score_mode: str = "mse", epochs: int = 100, batch_size: int = 256,
                 learning_rate: float = 1e-3, n_frames: int = 5, n_mels: int = 128,
                 log_floor: str = "max", seed: int = 0, device: str = "cpu", progress: bool = True,
                 cache_dir: str | None = None) -> None:
        if score_mode not in SCORE_MODES:
            raise ConfigError(f"score_mode must be one of {SCORE_MODES}, got {score_mode!r}")
        self.score_mode, self.epochs, self.batch_size = score_mode, epochs, batch_size
        self.learning_rate, self.n_frames, self.n_mels, self.log_floor = learning_rate, n_frames, n_mels, log_floor
        self.seed, self.device, self.progress, self.cache_dir = seed, device, progress, cache_dir
        self.model: nn.Module | None = None
        self.precision_source_: torch.Tensor | None = None
        self.precision_target_: torch.Tensor | None = None
        self.history_: list[float] = []
        self.epoch_seconds_: list[float] = []

    # -- what subclasses provide ------------------------------------------------------
    @abstractmethod
    def build_model(self, input_dim: int) -> nn.Module:
        """A fresh model for ``input_dim``-dimensional vectors."""

    @abstractmethod
    def training_loss(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Scalar loss of a batch in training mode."""

    @abstractmethod
    def reconstruct(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction used for scoring (eval mode)."""

    # -- features ---------------------------------------------------------------------
    @property
    def logmel_params(self) -> LogMelParams:
        return LogMelParams(n_mels=self.n_mels, log_floor=self.log_floor)

    def _logmels(self, clips: Sequence[Clip]) -> list[np.ndarray]:
        return logmels(clips, self.logmel_params, cache_dir=self.cache_dir, progress=self.progress)

    # -- training ---------------------------------------------------------------------
    def fit(self, train: Sequence[Clip], val: Sequence[Clip] | None = None) -> "FrameReconstructionSystem":
        del val  # reconstruction systems select nothing on validation data
        if not train:
            raise ConfigError("fit needs at least one training clip")
        seed_everything(self.seed)
        device = resolve_device(self.device)
        bank = FrameBank.from_clips(train, self.logmel_params, self.n_frames, cache_dir=self.cache_dir,
                                    progress=self.progress)
        self.model = self.build_model(bank.dim).to(device)
        optimiser = torch.optim.Adam(self.model.parameters(), lr=self.learning_rate)
        generator = torch.Generator().manual_seed(self.seed)
        self.history_, self.epoch_seconds_ = [], []
        bar = tqdm(range(self.epochs), desc=f"train {self.name}", unit="epoch", disable=not self.progress, leave=False)
        for _ in bar:
            started = time.perf_counter()
            self.model.train()
            order = torch.randperm(len(bank), generator=generator)
            total, count = 0.0, 0
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                if len(idx) <= 1:  # BatchNorm needs two samples, as the official code skips
                    continue
                x = bank.vectors(idx).to(device)
                loss = self.training_loss(self.model, x)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += loss.item() * len(idx)
                count += len(idx)
            self.history_.append(total / max(count, 1))
            self.epoch_seconds_.append(time.perf_counter() - started)
            bar.set_postfix(loss=f"{self.history_[-1]:.4f}")
        self._fit_covariances(bank, train, generator, device)
        self.fit_threshold(self._score_bank(bank, device))
        return self

    @torch.no_grad()
    def _fit_covariances(self, bank: FrameBank, clips: Sequence[Clip], generator: torch.Generator,
                         device: torch.device) -> None:
        assert self.model is not None
        self.model.eval()
        target = torch.tensor([c.is_target for c in clips])[bank.clip_index]
        order = torch.randperm(len(bank), generator=generator)
        dim = bank.dim
        sums = {False: torch.zeros(dim, dim, dtype=torch.float64), True: torch.zeros(dim, dim, dtype=torch.float64)}
        counts = {False: 0, True: 0}
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            x = bank.vectors(idx).to(device)
            diff = (x - self.reconstruct(self.model, x)).double().cpu()
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
    @torch.no_grad()
    def _residual_stats(self, bank: FrameBank, device: torch.device, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """Per clip: mean squared error and mean residual vector.

        Vectors go through the model in fixed-size chunks whatever the clip boundaries (BatchNorm
        is in eval mode, so each vector's output is its own) and are summed per clip: equal-size
        allocations keep the allocator from fragmenting, which per-clip batches did on 1,000+ clips.
        """
        assert self.model is not None
        if self.model.training:  # eval() walks every submodule: only when needed (hot path)
            self.model.eval()
        n_clips = int(bank.clip_index[-1]) + 1
        sq_sum = torch.zeros(n_clips, dtype=torch.float64)
        diff_sum = torch.zeros(n_clips, bank.dim, dtype=torch.float64)
        for start in range(0, len(bank), chunk):
            idx = torch.arange(start, min(start + chunk, len(bank)))
            x = bank.vectors(idx).to(device)
            diff = (x - self.reconstruct(self.model, x)).cpu().double()
            owner = bank.clip_index[idx]
            sq_sum.index_add_(0, owner, diff.pow(2).mean(dim=1))
            diff_sum.index_add_(0, owner, diff)
        counts = torch.bincount(bank.clip_index, minlength=n_clips).double()
        return (sq_sum / counts).numpy(), (diff_sum / counts[:, None]).numpy()

    def _score_bank(self, bank: FrameBank, device: torch.device) -> np.ndarray:
        mse, mean_diff = self._residual_stats(bank, device)
        if self.score_mode == "mse":
            return mse
        assert self.precision_source_ is not None and self.precision_target_ is not None
        d = torch.from_numpy(mean_diff)
        source = torch.einsum("nd,de,ne->n", d, self.precision_source_, d)
        target = torch.einsum("nd,de,ne->n", d, self.precision_target_, d)
        return torch.minimum(source, target).numpy()

    def _model_device(self) -> torch.device:
        """The configured device, moving the model there only when it is elsewhere."""
        assert self.model is not None
        device = resolve_device(self.device)
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        return device

    def score(self, clips: Sequence[Clip]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        device = self._model_device()
        return self._score_bank(FrameBank(self._logmels(clips), self.n_frames), device)

    def score_waveforms(self, waves: Sequence[np.ndarray], sample_rate: int = 16_000) -> np.ndarray:
        """Direct path for streams: resample if needed, log-mel, score; no files involved."""
        import soxr

        if self.model is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        transform = logmel_transform(self.logmel_params)
        mels = []
        for wave in waves:
            wave = np.asarray(wave, dtype=np.float32)
            if sample_rate != self.logmel_params.sample_rate:
                wave = soxr.resample(wave, sample_rate, self.logmel_params.sample_rate).astype(np.float32)
            with torch.no_grad():
                mels.append(transform(torch.from_numpy(wave)[None])[0].numpy())
        return self._score_bank(FrameBank(mels, self.n_frames), self._model_device())

    @torch.no_grad()
    def _frame_view(self, clip: Clip) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """(log-mel, reconstruction, squared error) of one clip, the last two per (frame, mel)
        averaged over the overlapping 5-frame vectors that cover each frame."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: fit or load the system before explaining")
        device = self._model_device()
        mel = self._logmels([clip])[0]
        bank = FrameBank([mel], self.n_frames)
        self.model.eval()
        x = bank.vectors(torch.arange(len(bank))).to(device)
        rec = self.reconstruct(self.model, x)
        shape = (len(bank), self.n_frames, self.n_mels)
        per_vector = {"rec": rec.cpu().reshape(shape), "err": (x - rec).pow(2).cpu().reshape(shape)}
        out = {}
        for key, values in per_vector.items():
            total = torch.zeros(mel.shape[1], self.n_mels)
            hits = torch.zeros(mel.shape[1], 1)
            for k in range(self.n_frames):
                total[k:k + len(bank)] += values[:, k]
                hits[k:k + len(bank)] += 1
            out[key] = total / hits
        return mel, out["rec"], out["err"]

    def anomaly_map(self, clip: Clip) -> np.ndarray:
        """Squared residual per (mel bin, frame), averaged over the vectors covering each frame."""
        return self._frame_view(clip)[2].T.numpy()

    def reconstruction(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        """(input log-mel, reconstructed log-mel), both (n_mels, frames) in dB, for pictures."""
        mel, rec, _ = self._frame_view(clip)
        return mel, rec.T.numpy()

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


def _precision(cov: torch.Tensor) -> torch.Tensor:
    """Inverse covariance, as the official code; the pseudo-inverse when the covariance is
    (numerically) singular, e.g. fewer residual vectors than dimensions on tiny data sets,
    where a plain inverse returns garbage that can even make distances negative."""
    eig = torch.linalg.eigvalsh(cov)
    if eig.min() > eig.max() * 1e-10:
        return torch.linalg.inv(cov)
    return torch.linalg.pinv(cov, hermitian=True, rtol=1e-10)
