"""The one training loop under every trainable system.

A trainable module's ``forward(*batch, generator=...)`` returns a dict of **per-sample**
losses. The module names its optimiser groups (``optimiser_groups()``, default: one group
``"loss"`` holding every parameter); for each group the dict holds the group's total loss
under the same key, and any other keys are only logged. One forward per batch gives every
group's loss; each group's optimiser then steps on the gradient of its own loss with
respect to its own parameters only (``backward(inputs=...)``), so a GAN's generator and
discriminator losses can share one forward pass without leaking gradients.

The loop owns epochs, batches, device placement, bf16 autocast, progress, periodic
checkpoints and resume; systems own their data and what happens after training.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from ..progress import progress
from .checkpoint import load_checkpoint, read_meta, save_checkpoint
from .context import RunContext

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
    history: list[dict[str, float]]   # per epoch: mean of every logged loss, and seconds
    resumed_from: int                 # epochs loaded from a checkpoint (0 = fresh)


def optimiser_groups(module: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The module's named parameter groups, or one group ``"loss"`` with every parameter."""
    groups = getattr(module, "optimiser_groups", None)
    return groups() if groups else {"loss": list(module.parameters())}


def train(module: nn.Module, batches: Batches, epochs: int, optimiser: OptimiserSpec, ctx: RunContext,
          fingerprint: str, name: str = "train") -> TrainResult:
    """Train ``module`` (already on ``ctx``'s device) for ``epochs`` epochs.

    ``batches(generator)`` yields tuples of CPU tensors for one epoch, shuffled with the
    given CPU generator; the loop moves them to the device. The module gets a generator
    on the device for its own random draws. With ``ctx.checkpoint_dir`` the full state is
    saved every ``ctx.checkpoint_every`` epochs and at the end; with ``ctx.resume`` a
    checkpoint of the same fingerprint is continued, any other is reported and ignored.
    """
    device = ctx.torch_device
    groups = optimiser_groups(module)
    # fused Adam: one kernel per step instead of several per tensor (about 30 % of a DCASE AE
    # step on 2 CPU cores, RESULTS 7.1); both the CPU and the CUDA build have it
    opts = {g: torch.optim.Adam(params, lr=optimiser.learning_rate, betas=optimiser.betas,
                                fused=device.type in ("cpu", "cuda"))
            for g, params in groups.items()}
    gens = {"data": ctx.generator(offset=1, device="cpu"), "model": ctx.generator(offset=2, device=device)}
    history: list[dict[str, float]] = []
    start = _resume(module, opts, gens, ctx, fingerprint, history, epochs)
    bar = progress(range(start, epochs), desc=name, unit="epoch", total=epochs, initial=start, enabled=ctx.progress)
    try:
        for epoch in bar:
            history.append(_epoch(module, batches, opts, gens, ctx, device))
            bar.set_postfix({k: f"{v:.4g}" for k, v in history[-1].items() if k in groups})
            if ctx.checkpoint_dir is not None and ((epoch + 1) % ctx.checkpoint_every == 0 or epoch + 1 == epochs):
                save_checkpoint(ctx.checkpoint_dir, module, opts, gens, epoch + 1, history, fingerprint)
    except KeyboardInterrupt as err:
        meta = read_meta(ctx.checkpoint_dir) if ctx.checkpoint_dir is not None else None
        saved = str(ctx.checkpoint_dir) if meta else None
        raise TrainingInterrupted(saved, int(meta["epoch"]) if meta else 0) from err
    finally:
        bar.close()
    module.eval()
    return TrainResult(history=history, resumed_from=start)


def _epoch(module: nn.Module, batches: Batches, opts: dict[str, torch.optim.Optimizer],
           gens: dict[str, torch.Generator], ctx: RunContext, device: torch.device) -> dict[str, float]:
    started = time.perf_counter()
    module.train()
    sums: dict[str, torch.Tensor] = {}  # summed on the device: no host sync per batch
    count = 0
    for batch in batches(gens["data"]):
        batch = tuple(ctx.to_device(t) for t in batch)
        with ctx.autocast():
            losses = module(*batch, generator=gens["model"])
        names = list(opts)
        for i, group in enumerate(names):  # every gradient first: a step would change weights
            opt = opts[group]              # that the later groups' backward passes still need
            opt.zero_grad(set_to_none=True)
            params = [p for g in opt.param_groups for p in g["params"]]
            losses[group].float().mean().backward(inputs=params, retain_graph=i + 1 < len(names))
        for opt in opts.values():
            opt.step()
        n = len(batch[0])
        for key, value in losses.items():
            total = value.detach().float().mean() * n
            sums[key] = sums[key] + total if key in sums else total
        count += n
    out = {k: float(v) / max(count, 1) for k, v in sums.items()}
    out["seconds"] = time.perf_counter() - started
    return out


def _resume(module: nn.Module, opts: dict[str, torch.optim.Optimizer], gens: dict[str, torch.Generator],
            ctx: RunContext, fingerprint: str, history: list[dict[str, float]], epochs: int) -> int:
    """Epochs already done according to a matching checkpoint (0 for a fresh start)."""
    if ctx.checkpoint_dir is None or not ctx.resume:
        return 0
    meta = read_meta(ctx.checkpoint_dir)
    if meta is None:
        print(f"resume: no checkpoint in {ctx.checkpoint_dir}; starting fresh", file=sys.stderr)
        return 0
    if meta.get("fingerprint") != fingerprint:
        print(f"resume: the checkpoint in {ctx.checkpoint_dir} was made for other hyperparameters, seed or "
              f"training clips; starting fresh", file=sys.stderr)
        return 0
    if int(meta["epoch"]) > epochs:
        print(f"resume: the checkpoint in {ctx.checkpoint_dir} is at epoch {meta['epoch']}, past the {epochs} "
              f"epochs asked for; starting fresh", file=sys.stderr)
        return 0
    load_checkpoint(ctx.checkpoint_dir, meta, module, opts, gens)
    history.extend(meta["history"])
    print(f"resume: continuing after epoch {meta['epoch']} from {ctx.checkpoint_dir}", file=sys.stderr)
    return int(meta["epoch"])
