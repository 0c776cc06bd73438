"""EAT (Efficient Audio Transformer, data2vec 2.0 style) as a frozen clip encoder.

Own implementation of the base configuration: 768-d, 12 post-norm blocks, 12 heads, 16x16
patches of a (1024 frames x 128 bins) Kaldi fbank, fixed 2-D sin-cos positions, one extra
(CLS) token; the clip embedding is the CLS token of the last block.

Weights: only a user's local checkpoint in the Hugging Face safetensors layout of
``worstchan/EAT-base_epoch30_pretrain`` (keys ``model.local_encoder.proj.*``,
``model.extra_tokens``, ``model.pre_norm.*``, ``model.blocks.N.{norm1,attn.qkv,attn.proj,
norm2,mlp.fc1,mlp.fc2}.*``; fine-tuned heads ``fc_norm`` / ``head`` are ignored). The key
layout was reconstructed from public re-implementations; it has NOT been checked against a
real checkpoint here (none is reachable). See docs/encoders.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from .base import Encoder
from .fbank import FbankParams, KaldiFbank
from .weights import locate_local

EAT_DIR_NAME = "EAT-base_epoch30_pretrain"
EAT_URL = "https://huggingface.co/worstchan/EAT-base_epoch30_pretrain"
EAT_MEAN, EAT_STD = -4.268, 4.569  # fbank normalisation of the EAT recipe: (x - mean) / (2 * std)
IGNORED_KEYS = ("fc_norm.", "head.")


@dataclass(frozen=True)
class EATConfig:
    """Architecture; defaults are EAT-base."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    mel_bins: int = 128
    target_length: int = 1024
    max_length: int = 768  # time positions available in the sin-cos table
    norm_eps: float = 1e-6
    qkv_bias: bool = True

    @classmethod
    def from_dict(cls, raw: dict) -> EATConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


def sincos_2d(embed_dim: int, n_time: int, n_freq: int) -> torch.Tensor:
    """(n_time * n_freq, embed_dim) fixed positions, time-major; first half of the channels
    encodes the frequency patch index, second half the time index (MAE convention)."""

    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    freq_idx, time_idx = np.meshgrid(
        np.arange(n_freq, dtype=np.float32), np.arange(n_time, dtype=np.float32)
    )
    emb = np.concatenate([one_d(embed_dim // 2, freq_idx), one_d(embed_dim // 2, time_idx)], axis=1)
    return torch.from_numpy(emb).float()


class PatchEmbed(nn.Module):
    """16x16 non-overlapping patches of (B, 1, T, F) -> (B, T/16 * F/16, D), time-major."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class PostNormBlock(nn.Module):
    """data2vec 2.0 block with layer_norm_first=False: x + attn -> norm1 -> + mlp -> norm2."""

    def __init__(self, cfg: EATConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads, cfg.qkv_bias)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.norm1(x + self.attn(x))
        return self.norm2(r + self.mlp(r))


class EATBackbone(nn.Module):
    """Patch embedding + sin-cos positions + CLS + 12 blocks. Input (B, 1, T, 128)."""

    positions: torch.Tensor  # a buffer (typed here: nn.Module's attribute lookup is untyped)

    def __init__(self, cfg: EATConfig = EATConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.local_encoder = PatchEmbed(cfg.patch_size, cfg.embed_dim)
        self.extra_tokens = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        nn.init.trunc_normal_(self.extra_tokens, std=0.02)
        positions = sincos_2d(cfg.embed_dim, cfg.max_length, cfg.mel_bins // cfg.patch_size)
        self.register_buffer("positions", positions[None], persistent=False)
        self.pre_norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.blocks = nn.ModuleList([PostNormBlock(cfg) for _ in range(cfg.depth)])

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, F) normalised fbank -> (B, 1 + patches, D) token features."""
        x = self.local_encoder(fbank)
        if x.shape[1] > self.positions.shape[1]:
            raise ValueError(
                f"{x.shape[1]} patches exceed the {self.positions.shape[1]} positions of the model"
            )
        x = x + self.positions[:, : x.shape[1]]
        x = torch.cat([self.extra_tokens.expand(len(x), -1, -1), x], dim=1)
        x = self.pre_norm(x)
        for block in self.blocks:
            x = block(x)
        return x

    # -- official (Hugging Face) key layout ---------------------------------------------
    def official_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"model.{k}": v for k, v in self.state_dict().items()}

    def load_official_state_dict(
        self, state: dict[str, torch.Tensor], source: str = "checkpoint"
    ) -> None:
        own = {}
        for key, value in state.items():
            key = key[len("model.") :] if key.startswith("model.") else key
            if key.startswith(IGNORED_KEYS):
                continue
            if key == "fixed_positional_encoder.positions":  # stored by some exports: must agree
                n = min(value.shape[1], self.positions.shape[1])
                if not torch.allclose(value[0, :n].float(), self.positions[0, :n], atol=1e-4):
                    raise CheckpointError(
                        f"{source}: stored positions differ from the 2-D sin-cos table"
                    )
                continue
            own[key] = value
        try:
            self.load_state_dict(own, strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{source}: does not match the EAT architecture ({err})") from err


def load_eat_checkpoint(path: str | Path) -> EATBackbone:
    """A backbone from ``model.safetensors`` (with ``config.json`` beside it when present)."""
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / "model.safetensors" if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(
            f"{weights}: EAT checkpoint not found (expected a Hugging Face model.safetensors)"
        )
    config_file = weights.parent / "config.json"
    cfg = (
        EATConfig.from_dict(json.loads(config_file.read_text()))
        if config_file.is_file()
        else EATConfig()
    )
    model = EATBackbone(cfg)
    try:
        state = load_file(str(weights))
    except Exception as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from err
    model.load_official_state_dict(state, str(weights))
    return model


def save_eat_checkpoint(model: EATBackbone, directory: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` in the Hugging Face layout."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.official_state_dict().items()},
        str(directory / "model.safetensors"),
    )
    (directory / "config.json").write_text(json.dumps(asdict(model.cfg), indent=2))
    return directory / "model.safetensors"


class EATEncoder(Encoder):
    """Frozen EAT: 16 kHz waveform -> fbank (1024 frames, padded / cropped) -> CLS token."""

    name = "eat_base"

    def __init__(
        self,
        device: str = "cpu",
        weights_path: str | None = None,
        config: EATConfig | None = None,
        seed: int = 0,
        batch_size: int = 4,
    ) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        if weights_path is None:
            weights_path = str(
                locate_local(EAT_DIR_NAME, EAT_URL, "a folder with model.safetensors + config.json")
            )
        if weights_path == "random":
            torch.manual_seed(seed)
            self.model, self.weights = EATBackbone(config or EATConfig()), "random"
            self.weights_sha256 = "random"
        else:
            self.model, self.weights = load_eat_checkpoint(weights_path), "pretrained"
            from .weights import sha256_of

            p = Path(weights_path)
            self.weights_sha256 = sha256_of(p / "model.safetensors" if p.is_dir() else p)
        self.dim = self.model.cfg.embed_dim
        self.fbank = KaldiFbank(FbankParams(window="hanning"))
        self.model.eval().requires_grad_(False).to(self.device)

    def features(self, wave: np.ndarray) -> torch.Tensor:
        """(1, T, 128) normalised fbank, zero-padded or cropped to ``target_length`` frames."""
        w = torch.from_numpy(np.asarray(wave, np.float32))[None]
        fb = self.fbank(w - w.mean())
        t = self.model.cfg.target_length
        fb = nn.functional.pad(fb, (0, 0, 0, max(0, t - fb.shape[1])))[:, :t]
        return (fb - EAT_MEAN) / (EAT_STD * 2)

    @torch.no_grad()
    def embed(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        if sample_rate != 16_000:
            raise ValueError(f"EAT expects 16 kHz input, got {sample_rate} Hz")
        rows = []
        for start in range(0, len(waveforms), self.batch_size):
            batch = torch.stack(
                [self.features(w) for w in waveforms[start : start + self.batch_size]]
            ).to(self.device)
            rows.append(self.model(batch)[:, 0].cpu())
        return (
            torch.cat(rows).numpy().astype(np.float32)
            if rows
            else np.zeros((0, self.dim), np.float32)
        )
