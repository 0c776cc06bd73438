"""Data-parallel training: sharding, the exact gradient average, 2 ranks vs 1 process, resume
under 2 ranks (real gloo processes), and `stethoscope train --data-parallel 2` on Ray Train
workers vs 1 worker for the DCASE AE (docs/data_parallel.md)."""

from __future__ import annotations

import datetime
import logging
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from stethoscope.engine import OptimiserSpec, RunContext, train
from stethoscope.engine.checkpoint import read_meta
from stethoscope.engine.distributed import World, average_gradients
from stethoscope.errors import ConfigError
from tests.engine.test_trainer import TinyGAN

GRAD_TOL = 1e-6  # the averaged gradient vs the whole batch's (float32 rounding only)
TRAIN_TOL = 1e-5  # 2 ranks vs 1 process after 3 epochs of Adam (no BatchNorm, no random draws)
# DCASE AE (BatchNorm), 2 workers vs 1: per-epoch mean loss (measured 1.5e-2: docs/data_parallel.md)
AE_LOSS_RTOL = 0.03


class MLP(nn.Module):
    """No BatchNorm and no random draws: data parallelism must reproduce one process exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        return {"loss": (self.net(x) - x).pow(2).mean(dim=1)}


DATA = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))


def _batches(generator: torch.Generator):
    """Batches of 7 (shards of 4 and 3: unequal weights) and a last one of 2 (shards of 1)."""
    order = torch.randperm(len(DATA), generator=generator)
    for start in range(0, len(DATA), 7):
        yield (DATA[order[start : start + 7]],)


def _train(
    module: nn.Module, ctx: RunContext, epochs: int
) -> tuple[dict[str, torch.Tensor], list[float]]:
    result = train(module, _batches, epochs, OptimiserSpec(1e-2), ctx, fingerprint="fp")
    key = "loss" if "loss" in result.history[0] else "d"
    return {k: v.clone() for k, v in module.state_dict().items()}, [h[key] for h in result.history]


AE_PARAMS = {"epochs": 3, "batch_size": 64, "n_mels": 16}


def _fit_ae(toy: Path, ctx: RunContext) -> tuple[list[float], list[float]]:
    """The DCASE AE system's unchanged fit on the toy fan clips: (loss per epoch, test scores)."""
    from stethoscope.systems import get_system
    from stethoscope.workflows.data import scan

    clips = scan(toy, machine="fan")
    system = get_system("dcase_ae", **AE_PARAMS)
    system.fit([c for c in clips if c.split == "train"], None, ctx)
    return system.history_, system.score([c for c in clips if c.split == "test"], ctx).tolist()


def _rank(rank: int, size: int, tmp: Path, toy: Path) -> None:
    """One of two gloo processes: every scenario the tests below check, results saved per rank."""
    dist.init_process_group(
        "gloo",
        init_method=f"file://{tmp / 'rendezvous'}",
        rank=rank,
        world_size=size,
        timeout=datetime.timedelta(seconds=300),
    )  # a mismatched collective fails, not hangs
    torch.set_num_threads(1)
    out: dict[str, object] = {}
    torch.manual_seed(0)
    model = MLP()
    part, weight = World(rank, size).shard((DATA[:7],), 1)
    model(*part)["loss"].mean().backward()
    average_gradients(list(model.parameters()), weight)
    out["grads"] = [p.grad.clone() for p in model.parameters()]

    ctx = RunContext(progress=False, seed=5, data_parallel=size)
    torch.manual_seed(1)
    out["mlp"] = _train(MLP(), ctx, epochs=3)

    torch.manual_seed(
        2
    )  # TinyGAN: two optimiser groups and random draws (each rank its own stream)
    out["gan_straight"] = _train(TinyGAN(), ctx, epochs=4)
    ckpt = ctx.replace(checkpoint_dir=tmp / "ckpt")
    torch.manual_seed(2)
    _train(TinyGAN(), ckpt, epochs=2)
    torch.manual_seed(99)  # resumed weights come from the checkpoint, not from this init
    out["gan_resumed"] = _train(TinyGAN(), ckpt.replace(resume=True), epochs=4)
    out["ae"] = _fit_ae(toy, RunContext(progress=False, seed=0, cache_dir=None, data_parallel=size))
    torch.save(out, tmp / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory, toy_root: Path) -> tuple[Path, list[dict]]:
    """Two real gloo processes (torch.multiprocessing), run once for the tests below."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank, args=(2, tmp, toy_root), nprocs=2, join=True)
    return tmp, [torch.load(tmp / f"rank{r}.pt") for r in range(2)]


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=tol, atol=tol, msg=key)


def test_shards_hold_every_sample_once_with_their_weights() -> None:
    batch = (torch.arange(7), torch.arange(7) * 10)
    parts = [World(r, 2).shard(batch, 1) for r in range(2)]
    assert [p[0][0].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    assert [p[0][1].tolist() for p in parts] == [[0, 10, 20, 30], [40, 50, 60]]
    assert [p[1] for p in parts] == pytest.approx([4 / 7, 3 / 7])
    # under BatchNorm (2 samples at least) a batch of 3 goes whole to rank 0; rank 1 sits out
    small = [World(r, 2).shard((torch.arange(3),), 2) for r in range(2)]
    assert small[0][0][0].tolist() == [0, 1, 2] and small[0][1] == 1.0 and small[1] == (None, 0.0)
    four = [
        World(r, 3).shard((torch.arange(5),), 2) for r in range(3)
    ]  # 5 over 3 ranks: 3 + 2 + none
    assert [len(p[0][0]) if p[0] else 0 for p in four] == [3, 2, 0]


def test_averaged_gradient_equals_the_whole_batch_gradient(ranks: tuple[Path, list[dict]]) -> None:
    torch.manual_seed(0)
    model = MLP()
    model(DATA[:7])["loss"].mean().backward()
    for out in ranks[1]:
        for got, want in zip(out["grads"], (p.grad for p in model.parameters()), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=GRAD_TOL)


def test_two_ranks_train_as_one_process(ranks: tuple[Path, list[dict]]) -> None:
    torch.manual_seed(1)
    weights, losses = _train(MLP(), RunContext(progress=False, seed=5), epochs=3)
    for out in ranks[1]:
        _close(out["mlp"][0], weights, TRAIN_TOL)
        assert out["mlp"][1] == pytest.approx(losses, rel=TRAIN_TOL)


def test_two_rank_resume_equals_the_uninterrupted_run(ranks: tuple[Path, list[dict]]) -> None:
    tmp, outs = ranks
    for out in outs:
        _close(out["gan_resumed"][0], out["gan_straight"][0], 1e-6)
        assert out["gan_resumed"][1] == pytest.approx(out["gan_straight"][1], rel=1e-6)
    _close(outs[0]["gan_straight"][0], outs[1]["gan_straight"][0], 0)  # the ranks hold one model
    meta = read_meta(tmp / "ckpt")
    assert meta["epoch"] == 4
    from safetensors.torch import load_file

    assert "rng.rank1.model" in load_file(
        str(tmp / "ckpt" / meta["tensors"])
    )  # rank 1's own stream kept


def test_two_ranks_fit_the_dcase_ae_close_to_one_process(
    ranks: tuple[Path, list[dict]], toy_root: Path
) -> None:
    """BatchNorm sees each rank's half of a batch: close, not exact (docs/data_parallel.md)."""
    losses, scores = _fit_ae(toy_root, RunContext(progress=False, seed=0, cache_dir=None))
    two_losses, two_scores = ranks[1][0]["ae"]
    assert len(losses) == AE_PARAMS["epochs"]
    assert two_losses == pytest.approx(losses, rel=AE_LOSS_RTOL)
    assert len(two_scores) == len(scores) and all(map(math.isfinite, two_scores))
    assert ranks[1][1]["ae"] == ranks[1][0]["ae"]  # both ranks end with the same model


def test_data_parallel_without_a_process_group_is_a_clear_error() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("needs a torch.distributed process group of 2 workers")
    ):
        train(
            MLP(),
            _batches,
            1,
            OptimiserSpec(1e-2),
            RunContext(progress=False, data_parallel=2),
            "fp",
        )
    with pytest.raises(ConfigError, match=r"data_parallel \(--data-parallel\) must be >= 1"):
        RunContext(data_parallel=0)


# -- Ray Train: the CLI's launcher ----------------------------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    pytest.importorskip(
        "ray.train.torch", reason="Ray Train is not installed (pip install 'stethoscope[ray]')"
    )
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


AE = [
    "--system",
    "dcase_ae",
    "--machine",
    "fan",
    "--set",
    *[f"{k}={v}" for k, v in AE_PARAMS.items()],
    "--quiet",
    "--no-cache",
    "--checkpoint-every",
    "0",
]


def test_two_ray_workers_train_the_dcase_ae_like_one(
    ray_local, toy_root: Path, tmp_path: Path
) -> None:
    from stethoscope.cli import main
    from stethoscope.systems.base import load_system
    from stethoscope.workflows.data import scan

    assert main(["train", "--data", str(toy_root), "--out", str(tmp_path / "one"), *AE]) == 0
    assert (
        main(
            [
                "train",
                "--data",
                str(toy_root),
                "--out",
                str(tmp_path / "two"),
                *AE,
                "--data-parallel",
                "2",
            ]
        )
        == 0
    )
    one, two = load_system(tmp_path / "one"), load_system(tmp_path / "two")
    assert two.run_["runtime"]["data_parallel"] == 2 and two.run_["command"] == one.run_["command"]
    assert not (tmp_path / "two" / ".ray").exists()
    assert len(one.history_) == AE_PARAMS["epochs"]
    assert two.history_ == pytest.approx(one.history_, rel=AE_LOSS_RTOL)
    test = [c for c in scan(toy_root, machine="fan") if c.split == "test"]
    ctx = RunContext(progress=False)
    assert np.isfinite(two.score(test, ctx)).all()


def test_without_ray_data_parallel_exits_2(
    toy_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from stethoscope.cli import main

    for name in [n for n in sys.modules if n == "ray" or n.startswith("ray.")] + ["ray"]:
        monkeypatch.setitem(
            sys.modules, name, None
        )  # `import ray...` now fails as when it is not installed
    assert (
        main(
            [
                "train",
                "--data",
                str(toy_root),
                "--out",
                str(tmp_path / "m"),
                *AE,
                "--data-parallel",
                "2",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--data-parallel needs Ray Train" in err and "pip install 'stethoscope[ray]'" in err
    assert "Traceback" not in err and not (tmp_path / "m").exists()
