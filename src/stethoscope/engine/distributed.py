"""Data parallelism inside the one training loop: one model trained by several workers.

Every worker (rank ``r`` of ``W``, one process each, joined in a `torch.distributed` process
group) runs the system's ``fit`` unchanged and builds the same global batches from the same
data generator; the loop (`engine.trainer`) keeps this rank's contiguous part of each batch,
runs forward and every group's backward on it, and replaces each gradient with the average
over all ranks weighted by their sample counts, so every rank steps on the gradient of the
whole global batch. Gradients are all-reduced explicitly after the backward passes, in one
flat buffer per step, rather than by `DistributedDataParallel`: the loop computes each
optimiser group's gradient with its own ``backward(inputs=...)`` (and a GAN's gradient penalty
differentiates inside ``forward``), which DDP's reducer, built on one backward per forward over
every parameter, does not follow. See docs/data_parallel.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

MODEL_STREAM_STRIDE = (
    1000  # rank r's model generator is seeded at offset 2 + r * stride: rank 0 keeps a
)
# single process's stream, the other ranks get streams of their own


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run: ``rank`` of ``size`` workers. A batch is a
    tuple of tensors with the samples on their first dimension (every system's batches are)."""

    rank: int
    size: int

    def shard(
        self, batch: tuple[torch.Tensor, ...], min_size: int
    ) -> tuple[tuple[torch.Tensor, ...] | None, float]:
        """This rank's part of a global batch and its weight (its share of the samples).

        The batch is cut into contiguous parts whose sizes differ by at most one; when it is too
        small to give every rank ``min_size`` samples (2 under BatchNorm), it is cut into fewer
        parts and the remaining ranks sit the step out (None, weight 0), so that every sample of
        the batch is trained on, as in a single process."""
        n = len(batch[0])
        parts = min(self.size, max(n // min_size, 1))
        if self.rank >= parts:
            return None, 0.0
        mine = tuple(torch.tensor_split(t, parts)[self.rank] for t in batch)
        return mine, len(mine[0]) / n


def world_of(data_parallel: int) -> World | None:
    """The process group a run with ``data_parallel`` workers trains in; None for one worker.

    A clear error when workers are asked for but this process is not in a process group of that
    size (the launcher, `engine.launch`, or ``torchrun`` makes one)."""
    if data_parallel == 1:
        return None
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError(
            f"data_parallel={data_parallel} needs a torch.distributed process group "
            "of "
            f"{data_parallel} workers: train with `stethoscope train --data-parallel "
            f"{data_parallel}` (Ray Train) or start the processes with torchrun"
        )
    size = dist.get_world_size()
    if size != data_parallel:
        raise ConfigError(
            f"data_parallel={data_parallel}, but the process group has {size} workers"
        )
    return World(dist.get_rank(), size)


def min_shard(module: nn.Module) -> int:
    """Fewest samples a rank may train on: 2 where a BatchNorm layer needs batch statistics."""
    return 2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()) else 1


def broadcast_module(module: nn.Module) -> None:
    """Make every rank's parameters and buffers rank 0's (one broadcast per tensor, once per run),
    after every rank has read its checkpoint: rank 0 may overwrite it once training starts."""
    dist.barrier()
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    """Wait until every rank gets here."""
    dist.barrier()


def average_gradients(params: Sequence[nn.Parameter], weight: float) -> None:
    """Replace every gradient by ``sum_r weight_r * grad_r`` over the ranks: with each rank's loss a
    mean over its samples and ``weight_r`` its share of the batch, the mean over the whole batch.

    One all-reduce of one flat buffer (every gradient, then one has-a-gradient flag per parameter),
    so a parameter no rank has a gradient for stays ``None``, as in a single process (Adam skips
    it).
    A rank that sat the step out sends zeros."""
    device = params[0].device
    chunks = [
        p.grad.detach().reshape(-1).float() * weight
        if p.grad is not None
        else torch.zeros(p.numel(), device=device)
        for p in params
    ]
    flags = torch.tensor([float(p.grad is not None) for p in params], device=device)
    flat = torch.cat([*chunks, flags])
    dist.all_reduce(flat)
    total = sum(p.numel() for p in params)
    present = (flat[total:] > 0).tolist()  # one device-to-host copy per step
    offset = 0
    for p, has in zip(params, present, strict=True):
        size = p.numel()
        p.grad = flat[offset : offset + size].view_as(p).to(p.dtype) if has else None
        offset += size


def average_buffers(module: nn.Module, world: World) -> None:
    """Average every floating buffer (BatchNorm running statistics) over the ranks.

    A running statistic is updated linearly from each step's batch statistic, so averaging once
    per epoch gives the same value as averaging after every step: the running mean of the
    per-rank batch means, which for equal parts is the whole batch's mean (the running variance
    misses the spread between the parts' means: BatchNorm stays approximate)."""
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


def sum_over_ranks(
    sums: dict[str, torch.Tensor], count: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], int]:
    """An epoch's summed losses and sample count over every rank (the keys of all ranks)."""
    keys: list[list[str]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(keys, sorted(sums))
    names = sorted(set().union(*keys))
    zero = torch.zeros((), device=device)
    flat = torch.stack(
        [sums.get(k, zero).double() for k in names]
        + [torch.tensor(float(count), device=device, dtype=torch.float64)]
    )
    dist.all_reduce(flat)
    return dict(zip(names, flat[:-1], strict=True)), int(flat[-1].item())


def gather_rng_states(model: torch.Generator, world: World) -> dict[str, torch.Tensor]:
    """Every other rank's own random streams (its model generator and torch's CPU/CUDA state), named
    ``rng.rank<r>.<stream>`` for rank 0's checkpoint; the data generator is the same on every
    rank."""
    mine = {"model": model.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        mine["torch_cuda"] = torch.cuda.get_rng_state()
    everyone: list[dict[str, torch.Tensor]] = [{} for _ in range(world.size)]
    dist.all_gather_object(everyone, {k: v.cpu() for k, v in mine.items()})
    return {
        f"rng.rank{r}.{k}": v for r, states in enumerate(everyone) if r for k, v in states.items()
    }
