"""One fit and its save: what every executor of `workflows.train` runs for one machine type
(or one joint fit), in this process or on ``ctx.data_parallel`` Ray Train workers."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.clip import Clip
from ..engine import RunContext
from ..systems.base import System, load_system
from ..utils import run_metadata


def say_on_stderr(message: str) -> None:
    """The default info printer of the workflows."""
    print(message, file=sys.stderr)


def fit_and_save(
    machine: str,
    train: Sequence[Clip],
    build: Callable[[], System],
    target: Path,
    ctx: RunContext,
    val: Sequence[Clip] | None = None,
    meta: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = say_on_stderr,
) -> tuple[System, float]:
    """Fit one machine type's system (``ctx``: its own, from `RunContext.for_run`; data-parallel
    with ``ctx.data_parallel`` > 1, Ray's hand-over in ``target/.ray``, removed before the save)
    and save it crash-safe to ``target``: (system, training seconds). Errors propagate."""
    system = build()
    mval = [c for c in val if c.machine == machine] if val else None
    say(f"[{machine}] training {system.name} on {len(train)} clips")
    started = time.perf_counter()
    system = fit_system(system, train, mval, ctx, target / ".ray")
    seconds = time.perf_counter() - started
    system.save(target, {"data_machine": machine, "train_seconds": seconds, **(meta or {})})
    return system, seconds


def fit_system(
    system: System,
    train: Sequence[Clip],
    val: Sequence[Clip] | None,
    ctx: RunContext,
    storage: Path,
) -> System:
    """``system.fit``; with ``ctx.data_parallel`` > 1 on that many workers, returning rank 0's
    fitted copy (``storage``: Ray's folder for the hand-over, removed afterwards)."""
    if ctx.data_parallel == 1:
        system.fit(train, val, ctx)
        return system

    def fit(wctx: RunContext) -> Mapping[str, System]:
        system.fit(train, val, wctx)
        return {"model": system}

    return _fit_in_workers(fit, ctx, storage)["model"]


def fit_joint(
    system: System,
    groups: Mapping[str, Sequence[Clip]],
    val: Sequence[Clip] | None,
    ctx: RunContext,
    storage: Path,
) -> dict[str, System]:
    """``system.fit_joint``; with ``ctx.data_parallel`` > 1 on that many workers (rank 0's
    systems)."""
    if ctx.data_parallel == 1:
        return system.fit_joint(groups, val, ctx)
    return _fit_in_workers(lambda wctx: system.fit_joint(groups, val, wctx), ctx, storage)


def _fit_in_workers(
    fit: Callable[[RunContext], Mapping[str, System]], ctx: RunContext, storage: Path
) -> dict[str, System]:
    """Run ``fit`` on every worker; rank 0 saves what it fitted, the caller loads it back. The
    run record keeps the worker's runtime and training facts, this process's command and
    versions."""
    from ..engine.launch import run_workers

    def work(wctx: RunContext) -> Path | None:
        import torch.distributed as dist

        fitted = fit(wctx)
        if dist.get_rank() != 0:
            return None
        folder = Path(tempfile.mkdtemp(prefix="stethoscope-fit-"))
        for key, system in fitted.items():
            system.save(folder / key)
        return folder

    try:
        folder = run_workers(work, ctx, storage)
        systems = {p.name: load_system(p) for p in sorted(folder.iterdir()) if p.is_dir()}
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    here = run_metadata()
    for system in systems.values():
        system.run_ = {k: v for k, v in (system.run_ or {}).items() if k not in here}
    return systems
