"""The one training loop under every trainable system.

A trainable module's ``forward(*batch, generator=...)`` returns a dict of **per-sample**
losses. The module names its optimiser groups (``optimiser_groups()``, default: one group
``"loss"`` holding every parameter); for each group the dict holds the group's total loss
under the same key, and any other keys are only logged. One forward per batch gives every
group's loss; each group's optimiser then steps on the gradient of its own loss with
respect to its own parameters only (``backward(inputs=...)``), so a GAN's generator and
discriminator losses can share one forward pass without leaking gradients.

The loop owns epochs, batches, device placement, bf16 autocast, progress, periodic
checkpoints and resume; systems own their data and what happens after training. With
``ctx.data_parallel`` > 1 the same loop runs on every worker of a process group, each on its
part of every batch with gradients averaged over the workers (`engine.distributed`); rank 0
alone shows progress and writes checkpoints.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..progress import progress
from .checkpoint import load_checkpoint, read_meta, save_checkpoint
from .context import RunContext
from .distributed import (
    MODEL_STREAM_STRIDE,
    World,
    average_buffers,
    average_gradients,
    barrier,
    broadcast_module,
    gather_rng_states,
    min_shard,
    sum_over_ranks,
    world_of,
)

Batches = Callable[[torch.Generator], Iterable[tuple[torch.Tensor, ...]]]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``checkpoint`` is the folder a ``--resume`` continues from."""

    def __init__(self, checkpoint: str | None, epoch: int) -> None:
        super().__init__(checkpoint)
        self.checkpoint, self.epoch = checkpoint, epoch


@dataclass(frozen=True)
class OptimiserSpec:
    """Adam settings shared by every group of a module (the papers use Adam throughout)."""

    learning_rate: float
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # per epoch: mean of every logged loss, and seconds
    resumed_from: int  # epochs loaded from a checkpoint (0 = fresh)


def optimiser_groups(module: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The module's named parameter groups, or one group ``"loss"`` with every parameter."""
    groups = getattr(module, "optimiser_groups", None)
    return groups() if groups else {"loss": list(module.parameters())}


def train(
    module: nn.Module,
    batches: Batches,
    epochs: int,
    optimiser: OptimiserSpec,
    ctx: RunContext,
    fingerprint: str,
    name: str = "train",
) -> TrainResult:
    """Train ``module`` (already on ``ctx``'s device) for ``epochs`` epochs.

    ``batches(generator)`` yields tuples of CPU tensors for one epoch, shuffled with the
    given CPU generator; the loop moves them to the device. The module gets a generator
    on the device for its own random draws. With ``ctx.checkpoint_dir`` the full state is
    saved every ``ctx.checkpoint_every`` epochs and at the end; with ``ctx.resume`` a
    checkpoint of the same fingerprint is continued, any other is reported and ignored.
    Data-parallel (``ctx.data_parallel`` workers in a process group): every rank calls this with
    the same arguments and ends with the same weights.
    """
    device = ctx.torch_device
    world = world_of(ctx.data_parallel)
    rank = world.rank if world else 0
    groups = optimiser_groups(module)
    opts = _adam(groups, optimiser, device)
    # the data order is shared by every rank; the module's own draws are each rank's own stream
    gens = {
        "data": ctx.generator(offset=1, device="cpu"),
        "model": ctx.generator(offset=2 + rank * MODEL_STREAM_STRIDE, device=device),
    }
    history: list[dict[str, float]] = []
    start = _resume(module, opts, gens, ctx, fingerprint, history, epochs, rank)
    if world:
        broadcast_module(module)
    bar = progress(
        range(start, epochs),
        desc=name,
        unit="epoch",
        total=epochs,
        initial=start,
        enabled=ctx.progress and rank == 0,
    )
    try:
        for epoch in bar:
            history.append(_epoch(module, batches, opts, gens, ctx, device, world))
            bar.set_postfix({k: f"{v:.4g}" for k, v in history[-1].items() if k in groups})
            if ctx.checkpoint_dir is not None and (
                (epoch + 1) % ctx.checkpoint_every == 0 or epoch + 1 == epochs
            ):
                _checkpoint(
                    ctx.checkpoint_dir, module, opts, gens, epoch + 1, history, fingerprint, world
                )
    except KeyboardInterrupt as err:
        meta = read_meta(ctx.checkpoint_dir) if ctx.checkpoint_dir is not None else None
        saved = str(ctx.checkpoint_dir) if meta else None
        raise TrainingInterrupted(saved, int(meta["epoch"]) if meta else 0) from err
    finally:
        bar.close()
    module.eval()
    return TrainResult(history=history, resumed_from=start)


def _adam(
    groups: dict[str, list[nn.Parameter]], optimiser: OptimiserSpec, device: torch.device
) -> dict[str, torch.optim.Optimizer]:
    """One Adam optimiser per parameter group."""
    # fused Adam: one kernel per step instead of several per tensor (about 30 % of a DCASE AE
    # step on 2 CPU cores, RESULTS 7.1); both the CPU and the CUDA build have it
    fused = device.type in ("cpu", "cuda")
    return {
        g: torch.optim.Adam(params, lr=optimiser.learning_rate, betas=optimiser.betas, fused=fused)
        for g, params in groups.items()
    }


def _checkpoint(
    folder: Path,
    module: nn.Module,
    opts: dict[str, torch.optim.Optimizer],
    gens: dict[str, torch.Generator],
    epochs_done: int,
    history: list[dict[str, float]],
    fingerprint: str,
    world: World | None,
) -> None:
    """Save the full training state after ``epochs_done`` epochs: rank 0 writes it (with every
    rank's model stream state); no rank goes on (e.g. to resume from it) before it is complete."""
    extra = gather_rng_states(gens["model"], world) if world else None
    if (world.rank if world else 0) == 0:
        save_checkpoint(folder, module, opts, gens, epochs_done, history, fingerprint, extra)
    if world:
        barrier()


def _epoch(
    module: nn.Module,
    batches: Batches,
    opts: dict[str, torch.optim.Optimizer],
    gens: dict[str, torch.Generator],
    ctx: RunContext,
    device: torch.device,
    world: World | None = None,
) -> dict[str, float]:
    started = time.perf_counter()
    module.train()
    sums: dict[str, torch.Tensor] = {}  # summed on the device: no host sync per batch
    count = 0
    smallest = min_shard(module) if world else 1
    every = (
        list(
            {
                id(p): p for opt in opts.values() for g in opt.param_groups for p in g["params"]
            }.values()
        )
        if world
        else []
    )  # what gradient averaging covers, in a process group only
    for batch in batches(gens["data"]):
        part, weight = world.shard(batch, smallest) if world else (batch, 1.0)
        if part is None:  # this rank sits the step out: it sends zero gradients
            for opt in opts.values():
                opt.zero_grad(set_to_none=True)
        else:
            part = tuple(ctx.to_device(t) for t in part)
            losses = _backward(module, part, opts, gens["model"], ctx)
            n = len(part[0])
            for key, value in losses.items():
                total = value.detach().float().mean() * n
                sums[key] = sums[key] + total if key in sums else total
            count += n
        if world:
            average_gradients(every, weight)
        for opt in opts.values():
            opt.step()
    if world:
        sums, count = sum_over_ranks(sums, count, device)
        average_buffers(module, world)
    out = {k: float(v) / max(count, 1) for k, v in sums.items()}
    out["seconds"] = time.perf_counter() - started
    return out


def _backward(
    module: nn.Module,
    batch: tuple[torch.Tensor, ...],
    opts: dict[str, torch.optim.Optimizer],
    generator: torch.Generator,
    ctx: RunContext,
) -> dict[str, torch.Tensor]:
    """One forward; every group's gradient of its own loss with respect to its own parameters."""
    with ctx.autocast():
        losses = module(*batch, generator=generator)
    names = list(opts)
    for i, group in enumerate(names):  # every gradient first: a step would change weights
        opt = opts[group]  # that the later groups' backward passes still need
        opt.zero_grad(set_to_none=True)
        params = [p for g in opt.param_groups for p in g["params"]]
        losses[group].float().mean().backward(inputs=params, retain_graph=i + 1 < len(names))
    return losses


def _resume(
    module: nn.Module,
    opts: dict[str, torch.optim.Optimizer],
    gens: dict[str, torch.Generator],
    ctx: RunContext,
    fingerprint: str,
    history: list[dict[str, float]],
    epochs: int,
    rank: int = 0,
) -> int:
    """Epochs already done according to a matching checkpoint (0 for a fresh start); only rank 0
    of a data-parallel run says what it found (every rank reads the same checkpoint)."""
    if ctx.checkpoint_dir is None or not ctx.resume:
        return 0
    say = (lambda message: print(message, file=sys.stderr)) if rank == 0 else (lambda message: None)
    meta = read_meta(ctx.checkpoint_dir)
    if meta is None:
        say(f"resume: no checkpoint in {ctx.checkpoint_dir}; starting fresh")
        return 0
    if meta.get("fingerprint") != fingerprint:
        say(
            f"resume: the checkpoint in {ctx.checkpoint_dir} was made for other hyperparameters, "
            "seed or training clips; starting fresh"
        )
        return 0
    if int(meta["epoch"]) > epochs:
        say(
            f"resume: the checkpoint in {ctx.checkpoint_dir} is at epoch {meta['epoch']}, past "
            f"the {epochs} epochs asked for; starting fresh"
        )
        return 0
    load_checkpoint(ctx.checkpoint_dir, meta, module, opts, gens, rank=rank, shared=("data",))
    history.extend(meta["history"])
    say(f"resume: continuing after epoch {meta['epoch']} from {ctx.checkpoint_dir}")
    return int(meta["epoch"])
