"""Start a data-parallel training on Ray Train workers (``stethoscope train --data-parallel N``).

`run_workers` runs one function on ``ctx.data_parallel`` Ray Train workers (`TorchTrainer`):
each is a process in a torch.distributed group (gloo on CPU; NCCL with one GPU per worker on
``--device cuda``), and the function gets the run's context with that worker's device. Whatever
folder rank 0's function returns comes back to the caller through a Ray checkpoint, so rank 0
may run on another node. Ray is optional (``pip install 'stethoscope[ray]'``); without it the
request fails with a clear message. See docs/data_parallel.md.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigError, StethoscopeError
from .checkpoint import read_meta
from .context import RunContext
from .trainer import TrainingInterrupted

WorkerFn = Callable[[RunContext], "Path | None"]
INSTALL_HINT = "pip install 'stethoscope[ray]'"


def require_ray(
    flag: str = "--data-parallel", module: str = "ray.train.torch", what: str = "Ray Train"
) -> ModuleType:
    """The ``ray`` module once ``module`` imports, else a clear error (exit 2 from the CLI) naming
    the ``flag`` that needs it and the extra to install."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(
            f"{flag} needs {what}, which is not installed: {INSTALL_HINT} ({err})"
        ) from None
    return ray


def run_workers(fn: WorkerFn, ctx: RunContext, storage: Path, name: str = "fit") -> Path:
    """Run ``fn(worker_ctx)`` on ``ctx.data_parallel`` workers and return a local copy (under
    ``storage``) of the folder rank 0's call returned.

    Connects to the Ray cluster of ``$RAY_ADDRESS`` or starts a local one unless Ray is already
    initialised. ``storage`` (Ray's run folder) must be on a filesystem every node sees at the
    same path when the workers run on several nodes."""
    require_ray()
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpu = ctx.device.startswith("cuda")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    _check_resources(ray.cluster_resources(), ctx.data_parallel, gpu)
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"fn": fn, "ctx": ctx},
        scaling_config=ScalingConfig(
            num_workers=ctx.data_parallel,
            use_gpu=gpu,
            resources_per_worker={"CPU": 1, "GPU": 1} if gpu else {"CPU": 1},
        ),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=str(Path(storage).resolve())),
    )
    try:
        result = trainer.fit()
    except KeyboardInterrupt as err:
        meta = read_meta(ctx.checkpoint_dir) if ctx.checkpoint_dir is not None else None
        raise TrainingInterrupted(
            str(ctx.checkpoint_dir) if meta else None, int(meta["epoch"]) if meta else 0
        ) from err
    except (
        Exception
    ) as err:  # Ray wraps a worker's exception; a StethoscopeError is the user's to see
        user = _user_error(err)
        if user is None:
            raise
        raise user from None
    if result.checkpoint is None:
        raise StethoscopeError("data-parallel training ended without rank 0's result")
    return Path(result.checkpoint.to_directory(str(Path(storage) / f"{name}-result")))


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: its device, its threads, the function, rank 0's folder reported
    (copied to the run's storage by `report`, then removed here)."""
    import shutil

    import ray.train
    import ray.train.torch
    import torch

    ctx: RunContext = config["ctx"]
    rank = ray.train.get_context().get_world_rank()
    if rank != 0:  # one progress display: rank 0's
        ctx = ctx.replace(progress=False)
    if ctx.device.startswith("cuda"):
        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
        ctx = ctx.replace(device=str(device))
    ctx.apply_threads()
    folder = config["fn"](ctx)
    if folder is None:
        ray.train.report({"rank": rank})
        return
    try:
        ray.train.report(
            {"rank": rank}, checkpoint=ray.train.Checkpoint.from_directory(str(folder))
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check_resources(resources: dict[str, float], workers: int, gpu: bool) -> None:
    """Refuse, rather than wait for ever, when the cluster cannot hold the workers."""
    kind = "GPU" if gpu else "CPU"
    have = int(resources.get(kind, 0))
    if have < workers:
        raise ConfigError(
            f"--data-parallel {workers} needs {workers} {kind}s in the Ray cluster "
            f"(one per worker); it has {have}"
        )


def _user_error(err: BaseException) -> StethoscopeError | None:
    """The StethoscopeError a worker raised, found inside Ray's wrapping exceptions, if any."""
    seen: set[int] = set()
    todo: list[Any] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, StethoscopeError):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            todo += list(failures.values())
    return None
