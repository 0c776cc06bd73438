"""LDGAN system: the log-mel reconstruction branch of TLDiffGAN, with TMixup.

Clip log-mels are standardised per mel bin (training mean/std, kept in the saved state),
cropped or padded to ``n_frames`` for training, and scored at their full length (the nets are
fully convolutional in time). Every interpretation of the paper is argued in
``docs/tldiffgan.md``.

Scores: encode, diffuse to ``score_step``, denoise back with the generator, decode; the
per-frame squared error (standardised domain, mean over mel bins) is reduced to one score by
its mean or the mean of its top-k frames. The anomaly map is the per-bin squared error in dB.
"""
from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from ..data.clip import Clip
from ..errors import CheckpointError, ConfigError
from ..features.extract import logmels
from ..features.logmel import LogMelParams
from ..models.ldgan import LDGAN, LDGANConfig, attention_map, tmixup
from ..models.ldgan.networks import GP_KINDS, generator_adv_loss
from ..models.ldgan.model import PREDICTIONS, moment_loss
from ..utils import atomic_write_bytes, atomic_write_json, resolve_device, seed_everything
from .base import System, register

REDUCTIONS = ("mean", "topk")
AUX_LABELS = ("section_attributes", "section", "none")
CHECKPOINT_TENSORS, CHECKPOINT_JSON = "checkpoint.safetensors", "checkpoint.json"
# parameters a checkpoint must share with the system that resumes it
_ARCH_PARAMS = ("n_frames", "n_mels", "log_floor", "latent_diffusion", "tmixup", "ae_channels", "latent_channels",
                "n_down", "gen_channels", "gen_blocks", "disc_channels", "n_steps", "schedule", "beta_min",
                "beta_max", "prediction", "gp_type", "aux_labels", "batch_size", "seed")


@register
class LDGANSystem(System):
    """Latent diffusion-GAN reconstruction of log-mels (TLDiffGAN's mel branch)."""

    name = "ldgan"
    description = "TLDiffGAN mel branch: latent diffusion-GAN reconstruction + TMixup (anomaly maps)"

    def __init__(self, *, n_frames: int = 313, n_mels: int = 128, log_floor: str = "max",
                 latent_diffusion: bool = True, tmixup: bool = True,
                 ae_channels: int = 64, latent_channels: int = 16, n_down: int = 2,
                 gen_channels: int = 64, gen_blocks: int = 2, disc_channels: int = 64,
                 n_steps: int = 4, schedule: str = "vp", beta_min: float = 0.1, beta_max: float = 20.0,
                 prediction: str = "eps", x0_clip: float = 5.0,
                 gp_type: str = "r1", gp_weight: float = 10.0,
                 w_pred: float = 1.0, w_stat: float = 1.0, w_adv: float = 0.1,
                 aux_labels: str = "section_attributes", aux_weight: float = 0.1,
                 tmixup_alpha: float = 0.2, tau_low: float = 0.2, tau_high: float = 0.5,
                 score_step: int = 2, score_draws: int = 1, score_seed: int = 0,
                 score_reduction: str = "mean", score_topk: float = 0.1,
                 epochs: int = 150, batch_size: int = 512, learning_rate: float = 1e-4,
                 adam_beta1: float = 0.5, adam_beta2: float = 0.9,
                 checkpoint_dir: str | None = None, checkpoint_every: int = 10,
                 seed: int = 0, device: str = "cpu", progress: bool = True, cache_dir: str | None = None) -> None:
        checks = [
            (prediction in PREDICTIONS, f"prediction must be one of {PREDICTIONS}, got {prediction!r}"),
            (gp_type in GP_KINDS, f"gp_type must be one of {GP_KINDS}, got {gp_type!r}"),
            (score_reduction in REDUCTIONS, f"score_reduction must be one of {REDUCTIONS}, got {score_reduction!r}"),
            (aux_labels in AUX_LABELS, f"aux_labels must be one of {AUX_LABELS}, got {aux_labels!r}"),
            (0 <= score_step <= n_steps, f"score_step must be in [0, n_steps={n_steps}], got {score_step}"),
            (0.0 <= tau_low <= tau_high <= 1.0, f"need 0 <= tau_low <= tau_high <= 1, got {tau_low}, {tau_high}"),
            (tmixup_alpha > 0, f"tmixup_alpha must be positive, got {tmixup_alpha}"),
            (0 < score_topk <= 1, f"score_topk must be in (0, 1], got {score_topk}"),
            (score_draws >= 1 and n_frames >= 1 and epochs >= 0 and batch_size >= 1, "score_draws, n_frames, "
             "batch_size must be >= 1 and epochs >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"ldgan: {message}")
        self.n_frames, self.n_mels, self.log_floor = n_frames, n_mels, log_floor
        self.latent_diffusion, self.tmixup = latent_diffusion, tmixup
        self.ae_channels, self.latent_channels, self.n_down = ae_channels, latent_channels, n_down
        self.gen_channels, self.gen_blocks, self.disc_channels = gen_channels, gen_blocks, disc_channels
        self.n_steps, self.schedule, self.beta_min, self.beta_max = n_steps, schedule, beta_min, beta_max
        self.prediction, self.x0_clip = prediction, x0_clip
        self.gp_type, self.gp_weight = gp_type, gp_weight
        self.w_pred, self.w_stat, self.w_adv = w_pred, w_stat, w_adv
        self.aux_labels, self.aux_weight = aux_labels, aux_weight
        self.tmixup_alpha, self.tau_low, self.tau_high = tmixup_alpha, tau_low, tau_high
        self.score_step, self.score_draws, self.score_seed = score_step, score_draws, score_seed
        self.score_reduction, self.score_topk = score_reduction, score_topk
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate
        self.adam_beta1, self.adam_beta2 = adam_beta1, adam_beta2
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, checkpoint_every
        self.seed, self.device, self.progress, self.cache_dir = seed, device, progress, cache_dir
        self.model: LDGAN | None = None
        self.mel_mean_: torch.Tensor | None = None
        self.mel_std_: torch.Tensor | None = None
        self.classes_: list[str] = []
        self.history_: list[dict[str, float]] = []
        self.tmixup_active_ = False
        self.train_scores_: np.ndarray | None = None

    # -- construction and features ----------------------------------------------------
    def build_model(self, n_classes: int) -> LDGAN:
        """A fresh LDGAN for the current parameters."""
        return LDGAN(LDGANConfig(
            n_mels=self.n_mels, ae_channels=self.ae_channels, latent_channels=self.latent_channels,
            n_down=self.n_down, gen_channels=self.gen_channels, gen_blocks=self.gen_blocks,
            disc_channels=self.disc_channels, n_steps=self.n_steps, schedule=self.schedule,
            beta_min=self.beta_min, beta_max=self.beta_max, prediction=self.prediction, x0_clip=self.x0_clip,
            latent_diffusion=self.latent_diffusion, n_classes=n_classes, gp_type=self.gp_type,
            gp_weight=self.gp_weight))

    def _logmels(self, clips: Sequence[Clip]) -> list[np.ndarray]:
        params = LogMelParams(n_mels=self.n_mels, log_floor=self.log_floor)
        return logmels(clips, params, cache_dir=self.cache_dir, progress=self.progress)

    def _standardise(self, mel: np.ndarray) -> torch.Tensor:
        assert self.mel_mean_ is not None and self.mel_std_ is not None
        return (torch.from_numpy(mel) - self.mel_mean_[:, None]) / self.mel_std_[:, None]

    def class_key(self, clip: Clip) -> str:
        """Auxiliary class of a clip: its section (machine id) and, optionally, its attributes."""
        if self.aux_labels == "section":
            return clip.section
        attrs = ";".join(f"{k}={v}" for k, v in clip.attributes)
        return f"{clip.section}|{attrs}"

    def _crop(self, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random ``n_frames`` window of a longer clip; shorter clips are padded with 0 (the mean)."""
        frames = mel.shape[1]
        if frames > self.n_frames:
            start = int(torch.randint(0, frames - self.n_frames + 1, (1,), generator=generator))
            return mel[:, start:start + self.n_frames]
        return F.pad(mel, (0, self.n_frames - frames))

    # -- training ---------------------------------------------------------------------
    def fit(self, train: Sequence[Clip], val: Sequence[Clip] | None = None) -> "LDGANSystem":
        """Train on normal clips; resumes from ``checkpoint_dir`` when it holds a checkpoint."""
        del val  # nothing is selected on validation data in the mel branch
        if not train:
            raise ConfigError("ldgan: fit needs at least one training clip")
        seed_everything(self.seed)
        device = resolve_device(self.device)
        mels = self._logmels(train)
        frames = np.concatenate([m.T for m in mels], axis=0).astype(np.float64)
        self.mel_mean_ = torch.from_numpy(frames.mean(axis=0)).float()
        self.mel_std_ = torch.from_numpy(frames.std(axis=0)).float().clamp_min(1e-2)
        data = [self._standardise(m) for m in mels]
        keys = [self.class_key(c) for c in train]
        self.classes_ = sorted(set(keys)) if self.aux_labels != "none" else []
        n_classes = len(self.classes_) if len(self.classes_) > 1 else 0
        labels = torch.tensor([self.classes_.index(k) for k in keys]) if n_classes else torch.zeros(len(train), dtype=torch.long)
        self.tmixup_active_ = self.tmixup and n_classes > 1
        if self.tmixup and not self.tmixup_active_:
            warnings.warn("ldgan: TMixup is off for this run: the training clips form a single auxiliary class "
                          "(section/attributes), so nothing trains the attention pooling (docs/tldiffgan.md)",
                          stacklevel=2)
        self.model = self.build_model(n_classes).to(device)
        betas = (self.adam_beta1, self.adam_beta2)
        opts = {"ae": torch.optim.Adam([p for n, p in self.model.named_parameters()
                                        if not n.startswith(("generator.", "discriminator."))],
                                       lr=self.learning_rate, betas=betas),
                "d": torch.optim.Adam(self.model.discriminator.parameters(), lr=self.learning_rate, betas=betas)}
        if self.model.generator is not None:
            opts["g"] = torch.optim.Adam(self.model.generator.parameters(), lr=self.learning_rate, betas=betas)
        generator = torch.Generator().manual_seed(self.seed)
        self.history_ = []
        start_epoch = self._resume(opts, generator)
        bar = tqdm(range(start_epoch, self.epochs), desc=f"train {self.name}", unit="epoch",
                   disable=not self.progress, leave=False)
        for epoch in bar:
            self.model.train()
            order = torch.randperm(len(data), generator=generator)
            sums: dict[str, float] = defaultdict(float)
            count = 0
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                x = torch.stack([self._crop(data[i], generator) for i in idx.tolist()]).to(device)
                onehot = F.one_hot(labels[idx], max(n_classes, 1)).float().to(device)
                for key, value in self._train_step(x, onehot, opts, generator).items():
                    sums[key] += value * len(idx)
                count += len(idx)
            self.history_.append({"epoch": epoch + 1, **{k: v / count for k, v in sums.items()}})
            bar.set_postfix(ae=f"{self.history_[-1]['ae']:.4f}")
            if self.checkpoint_dir and ((epoch + 1) % self.checkpoint_every == 0 or epoch + 1 == self.epochs):
                self._save_checkpoint(epoch + 1, opts, generator)
        self.model.eval()
        self.train_scores_ = self._score_mels(mels)  # in-sample; reused by the tldiffgan system
        self.fit_threshold(self.train_scores_)
        return self

    def _train_step(self, x: torch.Tensor, onehot: torch.Tensor, opts: dict[str, torch.optim.Optimizer],
                    generator: torch.Generator) -> dict[str, float]:
        """One batch: TMixup, then the autoencoder, discriminator and generator updates."""
        model = self.model
        assert model is not None
        targets = onehot if model.aux_head is not None else None
        if self.tmixup_active_:
            with torch.no_grad():
                attention = model.frame_attention(x)
            mix = tmixup(x, attention, self.tmixup_alpha, (self.tau_low, self.tau_high), generator)
            x = mix.mixed  # the reconstruction target of a mixed clip is the mixed clip itself
            targets = mix.mix_targets(onehot)
        ae = model.autoencoder_losses(x, targets)
        ae_loss = ae["ae"].mean() + (self.aux_weight * ae["aux"].mean() if "aux" in ae else 0.0)
        log = {"ae": ae["ae"].mean().item()}
        if "aux" in ae:
            log["aux"] = ae["aux"].mean().item()
        if not self.latent_diffusion:  # plain adversarial autoencoder: D judges reconstructions
            d = model.discriminator_losses(x, ae["x_rec"], generator=generator)
            _step(opts["d"], d["d_adv"] + d["d_gp"])
            adv = generator_adv_loss(model.discriminator(ae["x_rec"]), self.gp_type).mean()
            stat = moment_loss(ae["x_rec"], x).mean()
            _step(opts["ae"], ae_loss + self.w_stat * stat + self.w_adv * adv)
            return {**log, "d_adv": d["d_adv"].item(), "d_gp": d["d_gp"].item(), "g_stat": stat.item(),
                    "g_adv": adv.item()}
        _step(opts["ae"], ae_loss)
        z0 = ae["z0"].detach()  # the diffusion part does not move the autoencoder's latent
        step = model.sample_step(z0, generator)
        step["z0"] = z0
        d = model.discriminator_losses(step["real_prev"], step["fake_prev"], step["zt"], step["t"], generator)
        _step(opts["d"], d["d_adv"] + d["d_gp"])
        g = {k: v.mean() for k, v in model.generator_losses(step).items()}
        _step(opts["g"], self.w_pred * g["g_pred"] + self.w_stat * g["g_stat"] + self.w_adv * g["g_adv"])
        return {**log, "d_adv": d["d_adv"].item(), "d_gp": d["d_gp"].item(), **{k: v.item() for k, v in g.items()}}

    # -- checkpoints ------------------------------------------------------------------
    def _save_checkpoint(self, epoch: int, opts: dict[str, torch.optim.Optimizer], generator: torch.Generator) -> None:
        """Model, optimisers, RNG states and history after ``epoch`` epochs (safetensors + JSON)."""
        assert self.model is not None
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors["rng.generator"] = generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        groups = {}
        for name, opt in opts.items():
            state = opt.state_dict()
            groups[name] = state["param_groups"]
            for pid, slots in state["state"].items():
                for slot, value in slots.items():
                    tensors[f"opt.{name}.{pid}.{slot}"] = torch.as_tensor(value)
        directory = Path(self.checkpoint_dir)  # type: ignore[arg-type]
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write_bytes(directory / CHECKPOINT_TENSORS, save(tensors))
        atomic_write_json(directory / CHECKPOINT_JSON, {
            "epoch": epoch, "params": {p: getattr(self, p) for p in _ARCH_PARAMS}, "classes": self.classes_,
            "history": self.history_, "param_groups": groups})

    def _resume(self, opts: dict[str, torch.optim.Optimizer], generator: torch.Generator) -> int:
        """Load a checkpoint from ``checkpoint_dir`` if there is one; returns the epoch to start at."""
        if not self.checkpoint_dir or not (Path(self.checkpoint_dir) / CHECKPOINT_JSON).exists():
            return 0
        directory = Path(self.checkpoint_dir)
        try:
            meta = json.loads((directory / CHECKPOINT_JSON).read_text())
            tensors = load_file(str(directory / CHECKPOINT_TENSORS))
        except (OSError, json.JSONDecodeError, RuntimeError) as err:
            raise CheckpointError(f"{directory}: unreadable checkpoint ({err})") from err
        mine = {p: getattr(self, p) for p in _ARCH_PARAMS}
        differ = {p: (meta["params"].get(p), v) for p, v in mine.items() if meta["params"].get(p) != v}
        if differ or meta["classes"] != self.classes_:
            raise CheckpointError(f"{directory}: checkpoint does not match this run (saved vs now: {differ}, "
                                  f"classes {meta['classes']} vs {self.classes_})")
        assert self.model is not None
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for name, opt in opts.items():
            state: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
            for key, value in tensors.items():
                if key.startswith(f"opt.{name}."):
                    _, _, pid, slot = key.split(".", 3)
                    state[int(pid)][slot] = value
            opt.load_state_dict({"state": dict(state), "param_groups": meta["param_groups"][name]})
        generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch"])
        self.history_ = list(meta["history"])
        return int(meta["epoch"])

    # -- scoring ----------------------------------------------------------------------
    def _noises(self, frames: int, draw: int) -> list[torch.Tensor]:
        """The scoring noise of one clip and draw: fixed by (score_seed, draw, length), so a
        clip's score does not depend on the batch it is scored in."""
        assert self.model is not None
        g = torch.Generator().manual_seed(self.score_seed * 1_000_003 + draw)
        shape = (self.latent_channels, self.model.autoencoder.latent_frames(frames))
        return [torch.randn(shape, generator=g) for _ in range(self.score_step + 1)]

    @torch.no_grad()
    def _reconstruct(self, mels: Sequence[np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(standardised input, reconstruction averaged over ``score_draws``) per clip."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        device = resolve_device(self.device)
        self.model.to(device).eval()
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(mels)
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, m in enumerate(mels):
            by_length[m.shape[1]].append(i)
        for frames, members in by_length.items():
            for start in range(0, len(members), self.batch_size):
                idx = members[start:start + self.batch_size]
                x = torch.stack([self._standardise(mels[i]) for i in idx]).to(device)
                rec = torch.zeros_like(x)
                for draw in range(self.score_draws):
                    noises = [n[None].expand(len(idx), -1, -1).to(device) for n in self._noises(frames, draw)]
                    rec += self.model.reconstruct(x, self.score_step, noises)
                rec /= self.score_draws
                for j, i in enumerate(idx):
                    out[i] = (x[j].cpu(), rec[j].cpu())
        return out  # type: ignore[return-value]

    def _reduce(self, x: torch.Tensor, rec: torch.Tensor) -> float:
        per_frame = (x - rec).pow(2).mean(dim=0)
        if self.score_reduction == "mean":
            return float(per_frame.mean())
        k = max(1, int(np.ceil(self.score_topk * len(per_frame))))
        return float(per_frame.topk(k).values.mean())

    def _score_mels(self, mels: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([self._reduce(x, rec) for x, rec in self._reconstruct(mels)])

    def score(self, clips: Sequence[Clip]) -> np.ndarray:
        """Reconstruction error per clip (standardised log-mel domain), higher = more anomalous."""
        if self.model is None:
            raise RuntimeError(f"{self.name}: fit or load the system before scoring")
        return self._score_mels(self._logmels(clips))

    def anomaly_map(self, clip: Clip, domain: str = "logmel") -> np.ndarray:
        """Squared reconstruction error per (mel bin, frame): in dB^2 (``logmel``) or in the
        standardised domain the score uses (``standardised``)."""
        if domain not in ("logmel", "standardised"):
            raise ConfigError(f"anomaly_map domain must be 'logmel' or 'standardised', got {domain!r}")
        x, rec = self._reconstruct(self._logmels([clip]))[0]
        diff = rec - x
        if domain == "logmel":
            assert self.mel_std_ is not None
            diff = diff * self.mel_std_[:, None]
        return diff.pow(2).numpy()

    def reconstruction(self, clip: Clip) -> tuple[np.ndarray, np.ndarray]:
        """(input log-mel, reconstructed log-mel), both (n_mels, frames) in dB, for pictures."""
        assert self.mel_mean_ is not None and self.mel_std_ is not None
        mel = self._logmels([clip])[0]
        _, rec = self._reconstruct([mel])[0]
        return mel, (rec * self.mel_std_[:, None] + self.mel_mean_[:, None]).numpy()

    @torch.no_grad()
    def mel_embedding(self, clips: Sequence[Clip]) -> np.ndarray:
        """Attention-pooled latent of each (unmixed) clip: (n, latent_channels) float32."""
        return self._embed(self._logmels(clips))[0]

    @torch.no_grad()
    def temporal_attention(self, clip: Clip) -> np.ndarray:
        """TMixup's attention map of one clip per frame, in [0, 1] (max-normalised)."""
        return self._embed(self._logmels([clip]))[1][0]

    @torch.no_grad()
    def _embed(self, mels: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        if self.model is None:
            raise RuntimeError(f"{self.name}: fit or load the system before embedding")
        device = resolve_device(self.device)
        self.model.to(device).eval()
        pooled, maps = [], []
        for mel in mels:  # one clip at a time: clips may differ in length
            x = self._standardise(mel)[None].to(device)
            emb, weights = self.model.embed(self.model.encode(x))
            pooled.append(emb[0].cpu().numpy())
            maps.append(attention_map(weights, x.shape[-1])[0].cpu().numpy())
        return np.stack(pooled).astype(np.float32), maps

    # -- persistence ------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.model is None or self.mel_mean_ is None or self.mel_std_ is None:
            raise RuntimeError(f"{self.name}: nothing to save, the system is not fitted")
        state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        state["mel_mean"], state["mel_std"] = self.mel_mean_, self.mel_std_
        return state

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        head = tensors.get("model.aux_head.weight")
        self.model = self.build_model(0 if head is None else head.shape[0])
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.model.eval()
        self.mel_mean_, self.mel_std_ = tensors["mel_mean"].float(), tensors["mel_std"].float()

    def extra_state(self) -> dict[str, Any]:
        return {"classes": self.classes_, "history": self.history_, "tmixup_active": self.tmixup_active_}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.classes_ = list(state.get("classes", []))
        self.history_ = list(state.get("history", []))
        self.tmixup_active_ = bool(state.get("tmixup_active", False))


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
