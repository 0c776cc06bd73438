"""Train one system per machine type: the loop the CLI's `train` and `demo` share.

Each machine type gets its own checkpoint folder (``ctx.checkpoint_dir/<machine>``), so runs
never resume each other; its model is written crash-safe to ``OUT/<machine>`` (or ``OUT``
for a single type); ``OUT/run.json`` says per type ``trained``, ``failed: reason`` or
``not reached``, updated as the run goes. With ``ctx.resume`` types already trained are
skipped and an interrupted one continues from its checkpoint.

A joint system (`System.joint`) is fitted once over every machine type (`System.fit_joint`,
checkpoints in ``ctx.checkpoint_dir/joint``); each machine type's system it returns is saved
to that type's folder, and ``run.json`` keeps one record per type as above. Resumed, it is
skipped when every type is trained, else the joint fit runs again (continuing from its
checkpoint) and every type's folder is written anew.

With ``ctx.data_parallel`` > 1 each fit (per type, or the joint one) runs unchanged on that
many Ray Train workers that train its model together (`engine.launch`, docs/data_parallel.md);
rank 0's fitted system is the one saved.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .data.clip import Clip
from .engine import RunContext, TrainingInterrupted, discard_checkpoint, prune_checkpoints
from .engine.runlog import RunLog
from .errors import StethoscopeError
from .systems.base import CONFIG_FILE, System, load_system
from .utils import run_metadata


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def train_machines(groups: Mapping[str, Sequence[Clip]], build: Callable[[], System], out: str | Path,
                   ctx: RunContext, val: Sequence[Clip] | None = None, nested: bool = True,
                   meta: Mapping[str, Any] | None = None, say: Callable[[str], None] = _say) -> dict[str, System]:
    """Fit and save one system per machine type; returns the fitted (or, when resumed, loaded)
    systems. A type that fails is recorded and the others go on; the error is raised at the end."""
    out = Path(out)
    log = (RunLog.resume if ctx.resume else RunLog)(out / "run.json", list(groups), dict(meta or {}))
    try:
        joint = build().joint
    except StethoscopeError:  # the per-type loop below records the error for every type
        joint = False
    if joint:
        return _train_joint(groups, build, out, ctx, log, val, nested, meta, say)
    systems: dict[str, System] = {}
    failures: dict[str, str] = {}
    for machine, train in groups.items():
        target = out / machine if nested else out
        if ctx.resume and log.status(machine) == "trained" and (target / CONFIG_FILE).exists():
            say(f"[{machine}] already trained in {target}; skipped (--resume)")
            systems[machine] = load_system(target)
            continue
        log.start(machine)
        mctx = ctx.for_run(machine)
        try:
            system, seconds = fit_and_save(machine, train, build, target, mctx, val, meta, say)
        except TrainingInterrupted:
            log.failed(machine, "interrupted")
            raise
        except StethoscopeError as err:
            log.failed(machine, str(err))
            failures[machine] = str(err)
            say(f"[{machine}] failed: {err}")
            continue
        discard_checkpoint(mctx.checkpoint_dir)
        log.done(machine, seconds=round(seconds, 3), model=str(target), threshold=system.threshold_)
        systems[machine] = system
        say(f"[{machine}] saved to {target} ({seconds:.1f} s, threshold {system.threshold_:.4g})")
    finish_training(groups, ctx, log, failures)
    return systems


def fit_and_save(machine: str, train: Sequence[Clip], build: Callable[[], System], target: Path, ctx: RunContext,
                 val: Sequence[Clip] | None = None, meta: Mapping[str, Any] | None = None,
                 say: Callable[[str], None] = _say) -> tuple[System, float]:
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


def _train_joint(groups: Mapping[str, Sequence[Clip]], build: Callable[[], System], out: Path, ctx: RunContext,
                 log: RunLog, val: Sequence[Clip] | None, nested: bool, meta: Mapping[str, Any] | None,
                 say: Callable[[str], None]) -> dict[str, System]:
    """`train_machines` for a joint system: one `fit_joint` over every type, one folder per type."""
    targets = {machine: out / machine if nested else out for machine in groups}
    if ctx.resume and all(log.status(m) == "trained" and (t / CONFIG_FILE).exists() for m, t in targets.items()):
        say(f"[joint] every machine type already trained in {out}; skipped (--resume)")
        return {machine: load_system(target) for machine, target in targets.items()}
    for machine in groups:
        log.start(machine)
    jctx = ctx.for_run("joint")
    system = build()
    say(f"[joint] training {system.name} on {sum(map(len, groups.values()))} clips of {len(groups)} machine "
        f"type(s): {', '.join(groups)}")
    started = time.perf_counter()
    failures: dict[str, str] = {}
    try:
        fitted = fit_joint(system, groups, val, jctx, out / ".ray")
    except TrainingInterrupted:
        for machine in groups:
            log.failed(machine, "interrupted")
        raise
    except StethoscopeError as err:
        say(f"[joint] failed: {err}")
        fitted, failures = {}, {machine: f"joint fit: {err}" for machine in groups}
    seconds = time.perf_counter() - started
    for machine, target in targets.items():
        if machine not in fitted:
            failures.setdefault(machine, "the joint fit returned no system for it")
            log.failed(machine, failures[machine])
            continue
        fitted[machine].save(target, {"data_machine": machine, "train_seconds": seconds,
                                      "joint_machines": list(groups), **(meta or {})})
        log.done(machine, seconds=round(seconds, 3), model=str(target), threshold=fitted[machine].threshold_,
                 joint=True)
        say(f"[{machine}] saved to {target} (joint fit {seconds:.1f} s, threshold {fitted[machine].threshold_:.4g})")
    if not failures:
        discard_checkpoint(jctx.checkpoint_dir)
    finish_training(groups, ctx, log, failures)
    return {machine: fitted[machine] for machine in targets}


def fit_system(system: System, train: Sequence[Clip], val: Sequence[Clip] | None, ctx: RunContext,
               storage: Path) -> System:
    """``system.fit``; with ``ctx.data_parallel`` > 1 on that many workers, returning rank 0's
    fitted copy (``storage``: Ray's folder for the hand-over, removed afterwards)."""
    if ctx.data_parallel == 1:
        system.fit(train, val, ctx)
        return system

    def fit(wctx: RunContext) -> Mapping[str, System]:
        system.fit(train, val, wctx)
        return {"model": system}
    return _fit_in_workers(fit, ctx, storage)["model"]


def fit_joint(system: System, groups: Mapping[str, Sequence[Clip]], val: Sequence[Clip] | None,
              ctx: RunContext, storage: Path) -> dict[str, System]:
    """``system.fit_joint``; with ``ctx.data_parallel`` > 1 on that many workers (rank 0's systems)."""
    if ctx.data_parallel == 1:
        return system.fit_joint(groups, val, ctx)
    return _fit_in_workers(lambda wctx: system.fit_joint(groups, val, wctx), ctx, storage)


def _fit_in_workers(fit: Callable[[RunContext], Mapping[str, System]], ctx: RunContext,
                    storage: Path) -> dict[str, System]:
    """Run ``fit`` on every worker; rank 0 saves what it fitted, the caller loads it back. The
    run record keeps the worker's runtime and training facts, this process's command and versions."""
    from .engine.launch import run_workers

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


def finish_training(groups: Mapping[str, Sequence[Clip]], ctx: RunContext, log: RunLog, failures: Mapping[str, str]) -> None:
    """The end of a per-type training (local or on Ray): remove empty checkpoint folders; raise
    naming every failed machine type."""
    prune_checkpoints(ctx.checkpoint_dir)
    if failures:
        listed = "; ".join(f"{m}: {r}" for m, r in failures.items())
        raise StethoscopeError(f"{len(failures)} of {len(groups)} machine type(s) failed ({listed}); see {log.path}")
