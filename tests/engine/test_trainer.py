"""The engine's training loop: optimiser groups, checkpoints, resume, interruption, devices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from stethoscope.engine import OptimiserSpec, RunContext, TrainingInterrupted, train
from stethoscope.engine.checkpoint import META, read_meta

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class TinyGAN(nn.Module):
    """Two groups sharing one forward: ``d`` judges ``g``'s output, with random draws."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Linear(4, 4)
        self.d = nn.Linear(4, 1)

    def optimiser_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"g": list(self.g.parameters()), "d": list(self.d.parameters())}

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        fake = self.g(x + noise)
        real_logit, fake_logit = self.d(x).squeeze(1), self.d(fake).squeeze(1)
        d = nn.functional.softplus(-real_logit) + nn.functional.softplus(fake_logit)
        return {"g": nn.functional.softplus(-fake_logit), "d": d, "d_real": real_logit}


def _batches(data: torch.Tensor, stop_at: int | None = None):
    calls = {"n": 0}

    def batches(generator: torch.Generator):
        calls["n"] += 1
        if stop_at is not None and calls["n"] == stop_at:
            raise KeyboardInterrupt  # Ctrl-C during this epoch
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), 8):
            yield (data[order[start : start + 8]],)

    return batches


def _run(ctx: RunContext, epochs: int = 4, stop_at: int | None = None) -> TinyGAN:
    torch.manual_seed(ctx.seed)
    module = TinyGAN().to(ctx.torch_device)
    data = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    train(module, _batches(data, stop_at), epochs, OptimiserSpec(1e-2), ctx, fingerprint="fp")
    return module


@pytest.mark.parametrize("device", DEVICES)
def test_each_group_steps_only_its_own_parameters(device: str) -> None:
    ctx = RunContext(device=device, progress=False)
    torch.manual_seed(0)
    module = TinyGAN().to(ctx.torch_device)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    data = torch.randn(8, 4)
    groups_seen = []

    def batches(generator: torch.Generator):
        yield (data,)

    result = train(module, batches, 1, OptimiserSpec(1e-2), ctx, fingerprint="fp")
    groups_seen = sorted(k for k in result.history[0] if k in ("g", "d"))
    assert (
        groups_seen == ["d", "g"]
        and "d_real" in result.history[0]
        and "seconds" in result.history[0]
    )
    assert all(
        not torch.equal(before[k], v) for k, v in module.state_dict().items()
    )  # both groups moved

    # the d loss alone must not move g: step with a g loss of zero gradient
    class FrozenG(TinyGAN):
        def forward(self, x, generator=None):
            out = super().forward(x, generator)
            out["g"] = out["g"] * 0.0
            return out

    torch.manual_seed(0)
    frozen = FrozenG().to(ctx.torch_device)
    g_before = frozen.g.weight.detach().clone()
    train(frozen, batches, 1, OptimiserSpec(1e-2), ctx, fingerprint="fp")
    torch.testing.assert_close(
        frozen.g.weight.detach(), g_before
    )  # d's loss leaked no gradient into g


@pytest.mark.parametrize("device", DEVICES)
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path, device: str) -> None:
    base = RunContext(device=device, seed=3, progress=False)
    straight = _run(base)
    ctx = base.replace(checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(TrainingInterrupted) as info:
        _run(ctx, stop_at=3)  # Ctrl-C in epoch 3: epochs 1-2 are checkpointed
    assert info.value.epoch == 2 and info.value.checkpoint == str(tmp_path / "ckpt")
    assert read_meta(tmp_path / "ckpt")["epoch"] == 2
    resumed = _run(ctx.replace(resume=True))
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-6, atol=1e-6)
    assert read_meta(tmp_path / "ckpt")["epoch"] == 4


def test_resume_needs_a_matching_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = RunContext(progress=False, checkpoint_dir=tmp_path / "ckpt")
    _run(ctx, epochs=2)
    module = TinyGAN()
    data = torch.randn(16, 4)
    result = train(
        module,
        _batches(data),
        2,
        OptimiserSpec(1e-2),
        ctx.replace(resume=True),
        fingerprint="other",
    )
    assert result.resumed_from == 0 and len(result.history) == 2
    assert "made for other hyperparameters" in capsys.readouterr().err
    result = train(
        TinyGAN(),
        _batches(data),
        2,
        OptimiserSpec(1e-2),
        ctx.replace(resume=True),
        fingerprint="other",
    )
    assert result.resumed_from == 2 and result.history == read_meta(tmp_path / "ckpt")["history"]


def test_without_resume_a_checkpoint_is_not_read(tmp_path: Path) -> None:
    ctx = RunContext(progress=False, checkpoint_dir=tmp_path / "ckpt")
    _run(ctx, epochs=2)
    (tmp_path / "ckpt" / META).write_text("{not json")  # would raise if it were read
    _run(ctx, epochs=1)
    assert read_meta(tmp_path / "ckpt")["epoch"] == 1


def test_bf16_autocast_trains(tmp_path: Path) -> None:
    module = _run(RunContext(progress=False, precision="bf16"), epochs=1)
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_a_resumed_run_may_train_longer_but_not_shorter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = RunContext(progress=False, checkpoint_dir=tmp_path / "ckpt", seed=1)
    _run(ctx, epochs=2)
    longer = _run(ctx.replace(resume=True), epochs=4)  # continues at epoch 3
    straight = _run(RunContext(progress=False, seed=1), epochs=4)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(longer.state_dict()[key], value, rtol=1e-6, atol=1e-6)
    _run(ctx.replace(resume=True), epochs=3)  # the checkpoint is at 4: past 3
    assert "past the 3 epochs asked for; starting fresh" in capsys.readouterr().err
    assert read_meta(tmp_path / "ckpt")["epoch"] == 3
