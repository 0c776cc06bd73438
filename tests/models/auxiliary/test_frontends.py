"""STgram-MFN and the fine-tuned mn04 front-end: shapes, frame alignment, resampling, freezing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from stethoscope.engine import OptimiserSpec, RunContext, train
from stethoscope.features.logmel import LogMelParams
from stethoscope.models.auxiliary import (
    ArcFace,
    AuxNet,
    MN04Frontend,
    STgramMFN,
    TgramBranch,
    Upsample2,
    mixup,
)
from stethoscope.models.auxiliary.lora import LoRAConv1x1


@pytest.mark.parametrize("samples", [8_000, 16_383, 64_000])
def test_tgram_frames_align_with_the_log_mel(samples: int) -> None:
    out = TgramBranch(n_mels=16)(torch.randn(2, samples))
    assert out.shape == (2, 16, LogMelParams().n_frames(samples))


def test_stgram_embeds_any_length_deterministically() -> None:
    torch.manual_seed(0)
    net = STgramMFN(n_mels=32, width=0.125, embedding_dim=16, specaug=(2, 4, 4)).eval()
    x = torch.randn(3, 20_000)
    with torch.no_grad():
        first, again, longer = net(x), net(x), net(torch.randn(2, 50_000))
    assert first.shape == (3, 16) and longer.shape == (2, 16)
    torch.testing.assert_close(first, again)
    with torch.no_grad():  # in evaluation mode a clip's embedding does not depend on its batch
        torch.testing.assert_close(net(x[:1]), first[:1], rtol=1e-4, atol=1e-5)


def test_upsample_equals_scipy_resample_poly() -> None:
    x = np.random.default_rng(0).standard_normal((2, 4001)).astype(np.float32)
    ours = Upsample2()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, scipy.signal.resample_poly(x, 2, 1, axis=1), atol=1e-5)


def _mn04_step(
    finetune: str,
) -> tuple[MN04Frontend, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One engine epoch of an mn04 classifier (random control weights); states before and after."""
    torch.manual_seed(0)
    frontend = MN04Frontend(
        embedding_dim=8, finetune=finetune, last_blocks=2, specaug=(1, 4, 4), calibrate_seed=0
    )
    net = AuxNet(frontend, ArcFace(8, 3), "mixup")
    before = {k: v.clone() for k, v in frontend.state_dict().items()}
    waves, labels = torch.randn(4, 8_000), torch.tensor([0, 1, 2, 0])

    def batches(gen: torch.Generator):
        yield tuple(mixup(waves, labels, 0.5, gen))

    train(net, batches, 1, OptimiserSpec(1e-2), RunContext(progress=False), "test", "mn04")
    return frontend, before, frontend.state_dict()


def test_frozen_mn04_trains_only_its_head() -> None:
    frontend, before, after = _mn04_step("frozen")
    assert all(p.grad is None and not p.requires_grad for p in frontend.features.parameters())
    for key in before:  # weights and BatchNorm statistics of the network unchanged
        if key.startswith("features."):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_last_blocks_mn04_trains_the_end_of_the_network() -> None:
    frontend, before, after = _mn04_step("last")
    n = len(frontend.features)
    trained = {f"features.{i}." for i in (n - 2, n - 1)}
    for key in before:
        if key.startswith("features.") and "num_batches" not in key:
            moved = not torch.equal(before[key], after[key])
            assert moved == any(key.startswith(t) for t in trained) or (
                "running" in key and not moved
            ), key
    assert (
        frontend.features[0].training is False and frontend.features[n - 1].training is False
    )  # after train(): eval


def test_lora_mn04_starts_as_the_frozen_network_and_trains_only_adapters_and_head() -> None:
    torch.manual_seed(0)
    plain = MN04Frontend(embedding_dim=8, finetune="frozen", calibrate_seed=0).eval()
    torch.manual_seed(0)
    adapted = MN04Frontend(embedding_dim=8, finetune="lora", lora_rank=4, calibrate_seed=0).eval()
    x = torch.randn(2, 8_000)
    with torch.no_grad():  # B = 0 at the start: the adapted network is the pretrained one
        torch.testing.assert_close(adapted(x), plain(x))
    adapters = [m for m in adapted.modules() if isinstance(m, LoRAConv1x1)]
    assert len(adapters) > 20 and all(m.down.out_channels == 4 for m in adapters)
    _, before, after = _mn04_step("lora")
    for key in before:  # one step: B and the head move; A's gradient is zero while B = 0
        moved = not torch.equal(before[key], after[key])
        if ".down." not in key:
            assert moved == (".up." in key or key.startswith("head.")), key


def test_all_mn04_trains_every_layer() -> None:
    frontend, before, after = _mn04_step("all")
    assert all(p.requires_grad for p in frontend.parameters())
    assert not torch.equal(before["features.0.0.weight"], after["features.0.0.weight"])


def test_pretrained_mn04_loads(shared: Path) -> None:
    path = shared / "weights" / "mn04_as_mAP_432.pt"
    if not path.is_file():
        pytest.skip("mn04 weights not in ../shared/weights")
    from stethoscope.encoders.efficientat import load_mn04_state

    frontend = MN04Frontend(
        embedding_dim=8, finetune="frozen", state=load_mn04_state(str(path))
    ).eval()
    with torch.no_grad():
        out = frontend(torch.randn(2, 16_000) * 0.1)
    assert out.shape == (2, 8) and torch.isfinite(out).all()
