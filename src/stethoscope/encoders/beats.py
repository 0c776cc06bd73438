"""BEATs (iter3 layout) as a frozen clip encoder.

Own implementation of the BEATs encoder: 16x16 patch embedding (512-d, no bias) of the
normalised Kaldi fbank, LayerNorm, projection to 768-d, a grouped convolutional position
embedding (weight-normalised, kernel 128, 16 groups), LayerNorm, then 12 post-norm
("deep norm") transformer layers with a bucketed relative position bias that is shared by
all layers and gated per query (gated relative position, ``grep_*``). The clip embedding is
the mean of the last layer over patches.

Weights: only a user's local official checkpoint (``BEATs_iter3*.pt``: a dict holding
``cfg`` and ``model``), loaded with ``torch.load(weights_only=True)`` and ``strict=True``.
Key names follow the official code; they are NOT checked against a real checkpoint here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from .base import Encoder
from .fbank import FbankParams, KaldiFbank
from .weights import locate_local

BEATS_FILE = "BEATs_iter3.pt"
BEATS_URL = "https://github.com/microsoft/unilm/tree/master/beats (checkpoint links in its README)"
BEATS_MEAN, BEATS_STD = 15.41663, 6.55582  # (fbank - mean) / (2 * std), as the BEATs recipe


@dataclass(frozen=True)
class BEATsConfig:
    """Architecture (names as in the official ``cfg``); defaults are BEATs iter3."""

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    deep_norm: bool = True
    finetuned_model: bool = False
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, raw: dict) -> BEATsConfig:
        known = {f.name for f in fields(cls)}
        if raw.get("layer_norm_first"):
            raise CheckpointError("BEATs checkpoints with layer_norm_first=True are not supported")
        return cls(**{k: v for k, v in raw.items() if k in known})


def relative_buckets(
    query_len: int, key_len: int, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """T5-style bidirectional buckets of (key - query) offsets: exact near, logarithmic far."""
    offset = torch.arange(key_len)[None, :] - torch.arange(query_len)[:, None]
    half = num_buckets // 2
    buckets = (offset > 0).long() * half
    distance = offset.abs()
    exact = half // 2
    far = (
        exact
        + (
            torch.log(distance.float().clamp(min=1) / exact)
            / math.log(max_distance / exact)
            * (half - exact)
        ).long()
    )
    far = torch.clamp(far, max=half - 1)
    return buckets + torch.where(distance < exact, distance, far)


class WeightNormConv1d(nn.Module):
    """Conv1d whose weight is ``g * v / ||v||`` with the norm over all dims but the last
    (``weight_norm(dim=2)``), stored as ``weight_g`` / ``weight_v`` like the official code."""

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.groups, self.padding = groups, kernel // 2
        v = torch.randn(channels, channels // groups, kernel) * math.sqrt(4.0 / (kernel * channels))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)
        return nn.functional.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class RelPosAttention(nn.Module):
    """Multi-head self-attention plus the gated relative position bias."""

    def __init__(self, cfg: BEATsConfig, bias_table: nn.Embedding | None) -> None:
        super().__init__()
        dim, self.heads = cfg.encoder_embed_dim, cfg.encoder_attention_heads
        self.head_dim = dim // self.heads
        self.k_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.relative_attention_bias = bias_table
        self.gru_rel_pos = cfg.gru_rel_pos
        if cfg.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.heads, 1, 1))

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        bias = None
        if position_bias is not None:
            bias = position_bias[None]  # (1, H, n, n)
            if self.gru_rel_pos:
                gates = torch.sigmoid(self.grep_linear(q).view(b, self.heads, n, 2, 4).sum(-1))
                gate_a, gate_b = gates[..., 0:1], gates[..., 1:2]
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class EncoderLayer(nn.Module):
    """Post-norm layer; with deep norm the residual branch is scaled by (2 L)^(1/4)."""

    def __init__(self, cfg: BEATsConfig, bias_table: nn.Embedding | None) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.self_attn = RelPosAttention(cfg, bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.alpha = math.pow(2 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> torch.Tensor:
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.alpha + self.fc2(nn.functional.gelu(self.fc1(x))))


class TransformerEncoder(nn.Module):
    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim = cfg.encoder_embed_dim
        self.pos_conv = nn.Sequential(WeightNormConv1d(dim, cfg.conv_pos, cfg.conv_pos_groups))
        table = (
            nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads)
            if cfg.relative_position_embedding
            else None
        )
        # one bias table shared by every layer (the state_dict lists it under each layer)
        self.layers = nn.ModuleList([EncoderLayer(cfg, table) for _ in range(cfg.encoder_layers)])
        self.layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.pos_conv(x.transpose(1, 2))
        if self.cfg.conv_pos % 2 == 0:  # "same" padding with an even kernel: drop the extra frame
            conv = conv[:, :, :-1]
        x = self.layer_norm(x + nn.functional.gelu(conv).transpose(1, 2))
        bias = None
        table = cast(EncoderLayer, self.layers[0]).self_attn.relative_attention_bias
        if table is not None:
            n = x.shape[1]
            bias = table(
                relative_buckets(n, n, self.cfg.num_buckets, self.cfg.max_distance).to(x.device)
            )
            bias = bias.permute(2, 0, 1)  # (H, n, n)
        for layer in self.layers:
            x = layer(x, bias)
        return x


class BEATsBackbone(nn.Module):
    """(B, T, 128) normalised fbank -> (B, patches, 768)."""

    def __init__(self, cfg: BEATsConfig = BEATsConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, p, p, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
            if cfg.embed_dim != cfg.encoder_embed_dim
            else None
        )
        self.encoder = TransformerEncoder(cfg)
        self.predictor = (
            nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class) if cfg.finetuned_model else None
        )

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(fbank[:, None])  # (B, C, T/16, F/16)
        x = self.layer_norm(x.flatten(2).transpose(1, 2))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return self.encoder(x)


def load_beats_checkpoint(path: str | Path) -> BEATsBackbone:
    """Official ``.pt`` with ``cfg`` and ``model`` -> backbone (strict key match)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: BEATs checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({err})") from err
    if not isinstance(ckpt, dict) or "cfg" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: not an official BEATs checkpoint (needs 'cfg' and 'model')")
    model = BEATsBackbone(BEATsConfig.from_dict(dict(ckpt["cfg"])))
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: does not match the BEATs architecture ({err})") from err
    return model


def save_beats_checkpoint(model: BEATsBackbone, path: str | Path) -> Path:
    """Write ``{"cfg": ..., "model": state_dict}`` as the official release does."""
    path = Path(path)
    torch.save({"cfg": asdict(model.cfg), "model": model.state_dict()}, path)
    return path


class BEATsEncoder(Encoder):
    """Frozen BEATs: 16 kHz waveform * 2^15 -> Povey-window fbank -> mean over patches."""

    name = "beats_iter3"

    def __init__(
        self,
        device: str = "cpu",
        weights_path: str | None = None,
        config: BEATsConfig | None = None,
        seed: int = 0,
        batch_size: int = 4,
    ) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        if weights_path is None:
            weights_path = str(locate_local(BEATS_FILE, BEATS_URL, "the official .pt"))
        if weights_path == "random":
            torch.manual_seed(seed)
            self.model, self.weights, self.weights_sha256 = (
                BEATsBackbone(config or BEATsConfig()),
                "random",
                "random",
            )
        else:
            from .weights import sha256_of

            self.model, self.weights = load_beats_checkpoint(weights_path), "pretrained"
            self.weights_sha256 = sha256_of(weights_path)
        self.dim = self.model.cfg.encoder_embed_dim
        self.fbank = KaldiFbank(FbankParams(window="povey"))
        self.model.eval().requires_grad_(False).to(self.device)

    def features(self, wave: np.ndarray) -> torch.Tensor:
        """(T, 128) normalised fbank."""
        fb = self.fbank(torch.from_numpy(np.asarray(wave, np.float32))[None] * 2**15)[0]
        return (fb - BEATS_MEAN) / (2 * BEATS_STD)

    @torch.no_grad()
    def embed(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> np.ndarray:
        if sample_rate != 16_000:
            raise ValueError(f"BEATs expects 16 kHz input, got {sample_rate} Hz")
        rows: dict[int, torch.Tensor] = {}
        feats = [self.features(w) for w in waveforms]
        by_len: dict[int, list[int]] = {}
        for i, f in enumerate(feats):
            by_len.setdefault(f.shape[0], []).append(i)
        for idx in by_len.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                out = (
                    self.model(torch.stack([feats[i] for i in chunk]).to(self.device))
                    .mean(dim=1)
                    .cpu()
                )
                for j, i in enumerate(chunk):
                    rows[i] = out[j]
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return torch.stack([rows[i] for i in range(len(waveforms))]).numpy().astype(np.float32)
