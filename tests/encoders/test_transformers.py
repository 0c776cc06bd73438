"""EAT and BEATs: architecture with random weights (no real checkpoints are reachable here),
round trips through the official checkpoint layouts, and the Kaldi front ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stethoscope.encoders import get_encoder
from stethoscope.encoders.beats import (
    BEATsBackbone,
    BEATsConfig,
    BEATsEncoder,
    WeightNormConv1d,
    load_beats_checkpoint,
    relative_buckets,
    save_beats_checkpoint,
)
from stethoscope.encoders.eat import (
    EATBackbone,
    EATConfig,
    EATEncoder,
    load_eat_checkpoint,
    save_eat_checkpoint,
    sincos_2d,
)
from stethoscope.errors import CheckpointError

SMALL_EAT = EATConfig(embed_dim=32, depth=2, num_heads=4)
SMALL_BEATS = BEATsConfig(
    embed_dim=24,
    encoder_layers=2,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=4,
    conv_pos=16,
    conv_pos_groups=4,
    num_buckets=32,
    max_distance=64,
)


def _waves(n: int = 2, seconds: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32) for _ in range(n)]


# -- EAT ----------------------------------------------------------------------------------
def test_eat_base_layout_on_meta_device():
    with torch.device("meta"):
        model = EATBackbone()
    state = model.official_state_dict()
    assert len(state) == 149 and all(k.startswith("model.") for k in state)
    assert state["model.local_encoder.proj.weight"].shape == (768, 1, 16, 16)
    assert state["model.blocks.11.attn.qkv.weight"].shape == (2304, 768)
    assert state["model.blocks.0.mlp.fc1.weight"].shape == (3072, 768)
    assert state["model.extra_tokens"].shape == (1, 1, 768)
    assert (
        84e6 < sum(p.numel() for p in model.parameters()) < 90e6
    )  # EAT-base: ~88M with its decoder-free encoder


def test_eat_encoder_shapes_padding_and_cls():
    enc = get_encoder("eat_base", weights_path="random", config=SMALL_EAT)
    assert enc.weights == "random" and enc.dim == 32
    feats = enc.features(_waves(1, 1.0)[0])
    assert feats.shape == (1, 1024, 128)  # 98 frames, zero padded to 1024
    tokens = enc.model(feats[None])
    assert tokens.shape == (1, 1 + 64 * 8, 32)
    emb = enc.embed(_waves(3), 16_000)
    assert emb.shape == (3, 32) and np.isfinite(emb).all()
    np.testing.assert_allclose(emb[0], tokens[0, 0].detach().numpy(), atol=1e-5)  # the CLS token
    np.testing.assert_allclose(enc.embed(_waves(3)[:1], 16_000), emb[:1], atol=1e-5)


def test_eat_round_trip_in_hf_layout(tmp_path):
    torch.manual_seed(0)
    model = EATBackbone(SMALL_EAT).eval()
    save_eat_checkpoint(model, tmp_path)
    loaded = load_eat_checkpoint(tmp_path).eval()
    assert loaded.cfg == SMALL_EAT
    x = torch.randn(2, 1, 64, 128)
    torch.testing.assert_close(loaded(x), model(x))
    enc = EATEncoder(weights_path=str(tmp_path))
    assert enc.weights == "pretrained" and len(enc.weights_sha256) == 64


def test_eat_checkpoint_variants(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = EATBackbone(SMALL_EAT)
    path = save_eat_checkpoint(model, tmp_path)
    state = load_file(str(path))
    state["model.fc_norm.weight"] = torch.ones(32)  # fine-tuned heads are ignored
    state["model.fixed_positional_encoder.positions"] = sincos_2d(32, 768, 8)[None]
    save_file(state, str(path))
    load_eat_checkpoint(tmp_path)
    del state["model.blocks.1.mlp.fc2.bias"]
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match="does not match the EAT architecture"):
        load_eat_checkpoint(tmp_path)


def test_sincos_positions_layout():
    pos = sincos_2d(16, 4, 8).numpy()  # time-major: index = t * 8 + f
    assert pos.shape == (32, 16)
    np.testing.assert_allclose(
        pos[3, :4], np.sin([3.0, 3.0 / 10, 3.0 / 100, 3.0 / 1000]), atol=1e-6
    )  # freq part
    np.testing.assert_allclose(
        pos[2 * 8 + 5, 8:12], np.sin([2.0, 2.0 / 10, 2.0 / 100, 2.0 / 1000]), atol=1e-6
    )


def test_eat_missing_checkpoint_message(monkeypatch, tmp_path):
    monkeypatch.setenv("STETHOSCOPE_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"EAT-base_epoch30_pretrain.*huggingface\.co"):
        get_encoder("eat_base")


# -- BEATs --------------------------------------------------------------------------------
def test_beats_iter3_layout_on_meta_device():
    with torch.device("meta"):
        model = BEATsBackbone()
    state = model.state_dict()
    assert len(state) == 250
    assert state["patch_embedding.weight"].shape == (512, 1, 16, 16)
    assert state["post_extract_proj.weight"].shape == (768, 512)
    assert state["encoder.pos_conv.0.weight_g"].shape == (1, 1, 128)
    assert state["encoder.pos_conv.0.weight_v"].shape == (768, 48, 128)
    assert state["encoder.layers.5.self_attn.relative_attention_bias.weight"].shape == (320, 12)
    assert state["encoder.layers.3.self_attn.grep_linear.weight"].shape == (8, 64)
    assert state["encoder.layers.3.self_attn.grep_a"].shape == (1, 12, 1, 1)
    # one relative-position table shared by all layers, as in BEATs
    assert (
        model.encoder.layers[0].self_attn.relative_attention_bias
        is model.encoder.layers[11].self_attn.relative_attention_bias
    )


def test_relative_buckets_match_t5_rule():
    b = relative_buckets(1, 400, num_buckets=320, max_distance=800)[0]
    half, exact = 160, 80
    assert b[0] == 0 and b[79] == half + 79  # exact below 80, positive offsets in the upper half
    assert b[80] == half + exact  # log region starts at max_exact
    assert b[399] == half + exact + int(np.log(399 / exact) / np.log(800 / exact) * (half - exact))
    back = relative_buckets(400, 1, num_buckets=320, max_distance=800)[:, 0]
    assert back[0] == 0 and back[5] == 5  # negative offsets use the lower half


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_weight_norm_conv_matches_torch_weight_norm():
    torch.manual_seed(0)
    ours = WeightNormConv1d(16, 8, 4)
    with torch.no_grad():
        ours.weight_g.mul_(torch.rand_like(ours.weight_g) + 0.5)
    ref = torch.nn.Conv1d(16, 16, 8, padding=4, groups=4)
    ref = torch.nn.utils.weight_norm(ref, name="weight", dim=2)
    ref.load_state_dict(
        {"weight_g": ours.weight_g.data, "weight_v": ours.weight_v.data, "bias": ours.bias.data}
    )
    x = torch.randn(2, 16, 20)
    torch.testing.assert_close(ours(x), ref(x))


def test_beats_encoder_and_round_trip(tmp_path):
    torch.manual_seed(0)
    model = BEATsBackbone(SMALL_BEATS).eval()
    path = save_beats_checkpoint(model, tmp_path / "BEATs_small.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"cfg", "model"} and raw["cfg"]["encoder_layers"] == 2
    loaded = load_beats_checkpoint(path).eval()
    x = torch.randn(2, 98, 128)
    torch.testing.assert_close(loaded(x), model(x))
    enc = BEATsEncoder(weights_path=str(path))
    waves = _waves(3)
    emb = enc.embed(waves, 16_000)
    assert enc.weights == "pretrained" and emb.shape == (3, 32)
    feats = enc.features(waves[0])
    assert feats.shape == (98, 128)
    np.testing.assert_allclose(
        emb[0], model(feats[None]).mean(dim=1)[0].detach().numpy(), atol=1e-5
    )


def test_beats_rejects_bad_checkpoints(tmp_path):
    torch.save({"model": {}}, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="needs 'cfg' and 'model'"):
        load_beats_checkpoint(tmp_path / "a.pt")
    model = BEATsBackbone(SMALL_BEATS)
    state = model.state_dict()
    state.pop("encoder.layers.1.fc1.bias")
    from dataclasses import asdict

    torch.save({"cfg": asdict(SMALL_BEATS), "model": state}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="does not match the BEATs architecture"):
        load_beats_checkpoint(tmp_path / "b.pt")
