"""The training orchestrator: one system per machine type, trained by an executor, recorded in
``run.json`` (`train_machines`); a data folder to trained models (`train_folder`). The epoch loop
itself is `engine.trainer`; one fit and its save is `workflows.fitting`.

Each machine type gets its own checkpoint folder (``ctx.checkpoint_dir/<machine>``), so runs
never resume each other; its model is written crash-safe to ``OUT/<machine>`` (or ``OUT``
for a single type); ``OUT/run.json`` says per type ``trained``, ``failed: reason`` or
``not reached``, updated as the run goes. With ``ctx.resume`` types already trained are
skipped and an interrupted one continues from its checkpoint.

Executors: `LocalExecutor` (this process, one type after the other; each fit on
``ctx.data_parallel`` Ray Train workers when > 1, `engine.launch`) and
`scale.ray_train.RayExecutor` (one Ray task per type). Both run `fitting.fit_and_save`; the
resume-skip, the run log and the failure report are this module's, the same for both.

A joint system (`System.joint`) is fitted once over every machine type (`System.fit_joint`,
checkpoints in ``ctx.checkpoint_dir/joint``); each machine type's system it returns is saved
to that type's folder, and ``run.json`` keeps one record per type as above. Resumed, it is
skipped when every type is trained, else the joint fit runs again (continuing from its
checkpoint) and every type's folder is written anew.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..data.clip import Clip, channel_name
from ..engine import RunContext, TrainingInterrupted, discard_checkpoint, prune_checkpoints
from ..engine.runlog import TRAINED, RunLog
from ..errors import LayoutError, StethoscopeError
from ..systems.base import CONFIG_FILE, System, load_system
from .data import by_machine, resolve_channel, scan, training_clips
from .fitting import fit_and_save, fit_joint, say_on_stderr

Say = Callable[[str], None]
Build = Callable[[], System]


@dataclass(frozen=True)
class Job:
    """One machine type to train: its clips, model folder, own context and validation clips."""

    machine: str
    train: Sequence[Clip]
    target: Path
    ctx: RunContext
    val: Sequence[Clip] | None = None


@dataclass
class Outcome:
    """How a job ended: trained (``seconds``, ``threshold``, the ``system`` where the executor
    hands it back) or ``error`` (the reason recorded; with ``crash``, the exception to raise)."""

    machine: str
    seconds: float = 0.0
    threshold: float | None = None
    system: System | None = None
    error: str | None = None
    crash: BaseException | None = None


class Executor(Protocol):
    """Where the fits run. `run` takes the jobs as they come (pulling one starts it in
    ``run.json``) and yields each one's outcome; `skipped` gives the system of a type skipped on
    resume (or None); `train_joint` runs a joint system's one fit (run log included)."""

    def run(
        self, jobs: Iterator[Job], build: Build, meta: Mapping[str, Any], say: Say
    ) -> Iterator[Outcome]: ...

    def skipped(self, target: Path) -> System | None: ...

    def train_joint(
        self,
        groups: Mapping[str, Sequence[Clip]],
        build: Build,
        out: Path,
        ctx: RunContext,
        val: Sequence[Clip] | None,
        nested: bool,
        meta: Mapping[str, Any] | None,
        say: Say,
    ) -> dict[str, System]: ...


class LocalExecutor:
    """This process, one machine type after the other (data-parallel with ``ctx.data_parallel`` >
    1)."""

    def run(
        self, jobs: Iterator[Job], build: Build, meta: Mapping[str, Any], say: Say
    ) -> Iterator[Outcome]:
        """Fit and save each job in turn; a `StethoscopeError` is its outcome, the others go on."""
        for job in jobs:
            try:
                system, seconds = fit_and_save(
                    job.machine, job.train, build, job.target, job.ctx, job.val, meta, say
                )
            except TrainingInterrupted:
                raise
            except StethoscopeError as err:
                yield Outcome(job.machine, error=str(err))
                continue
            discard_checkpoint(job.ctx.checkpoint_dir)
            yield Outcome(job.machine, seconds, system.threshold_, system)

    def skipped(self, target: Path) -> System | None:
        """The saved model of a type skipped on resume, loaded."""
        return load_system(target)

    def train_joint(
        self,
        groups: Mapping[str, Sequence[Clip]],
        build: Build,
        out: Path,
        ctx: RunContext,
        val: Sequence[Clip] | None,
        nested: bool,
        meta: Mapping[str, Any] | None,
        say: Say,
    ) -> dict[str, System]:
        """A joint system's one fit here (see `train_joint_here`)."""
        return train_joint_here(groups, build, out, ctx, val, nested, meta, say)


def train_machines(
    groups: Mapping[str, Sequence[Clip]],
    build: Build,
    out: str | Path,
    ctx: RunContext,
    val: Sequence[Clip] | None = None,
    nested: bool = True,
    meta: Mapping[str, Any] | None = None,
    say: Say = say_on_stderr,
    executor: Executor | None = None,
) -> dict[str, System]:
    """Fit and save one system per machine type (``groups``: type -> its training clips) with
    ``executor`` (default `LocalExecutor`); returns the systems handed back (fitted here, or
    loaded when skipped on resume; none from a remote executor). A type that fails is recorded
    and the others go on; a `StethoscopeError` names every failed type at the end."""
    executor = executor or LocalExecutor()
    out = Path(out)
    try:
        joint = build().joint
    except StethoscopeError:  # every type's job records the error
        joint = False
    if joint:
        return executor.train_joint(groups, build, out, ctx, val, nested, meta, say)
    log = (RunLog.resume if ctx.resume else RunLog)(
        out / "run.json", list(groups), dict(meta or {})
    )
    targets = {machine: out / machine if nested else out for machine in groups}
    systems: dict[str, System] = {}
    running: list[str] = []

    def jobs() -> Iterator[Job]:
        for machine, train in groups.items():
            target = targets[machine]
            if ctx.resume and log.status(machine) == TRAINED and (target / CONFIG_FILE).exists():
                say(f"[{machine}] already trained in {target}; skipped (--resume)")
                loaded = executor.skipped(target)
                if loaded is not None:
                    systems[machine] = loaded
                continue
            log.start(machine)
            running.append(machine)
            yield Job(
                machine,
                train,
                target,
                ctx.for_run(machine),
                [c for c in val if c.machine == machine] if val else None,
            )

    failures = _record(
        executor.run(jobs(), build, dict(meta or {}), say), log, targets, systems, running, say
    )
    finish_training(groups, ctx, log, failures)
    return systems


def _record(
    outcomes: Iterator[Outcome],
    log: RunLog,
    targets: Mapping[str, Path],
    systems: dict[str, System],
    running: list[str],
    say: Say,
) -> dict[str, str]:
    """Record each outcome in the run log as it comes; {type: reason} of the failed ones. An
    interruption marks the types still running ``failed: interrupted`` (checkpoints stay)."""
    failures: dict[str, str] = {}
    try:
        for outcome in outcomes:
            machine = outcome.machine
            running.remove(machine)
            if outcome.error is not None:
                log.failed(machine, outcome.error)
                if (
                    outcome.crash is not None
                ):  # a bug in the job: recorded, then raised as it would be here
                    raise outcome.crash from None
                failures[machine] = outcome.error
                say(f"[{machine}] failed: {outcome.error}")
                continue
            log.done(
                machine,
                seconds=round(outcome.seconds, 3),
                model=str(targets[machine]),
                threshold=outcome.threshold,
            )
            if outcome.system is not None:
                systems[machine] = outcome.system
            say(
                f"[{machine}] saved to {targets[machine]} ({outcome.seconds:.1f} s, threshold "
                f"{outcome.threshold:.4g})"
            )
    except (TrainingInterrupted, KeyboardInterrupt):
        for machine in running:
            log.failed(machine, "interrupted")
        raise
    finally:
        close = getattr(outcomes, "close", None)
        if close is not None:
            close()
    return failures


def train_joint_here(
    groups: Mapping[str, Sequence[Clip]],
    build: Build,
    out: Path,
    ctx: RunContext,
    val: Sequence[Clip] | None,
    nested: bool,
    meta: Mapping[str, Any] | None,
    say: Say,
) -> dict[str, System]:
    """`train_machines` for a joint system in this process: one `fit_joint` over every type,
    one folder per type."""
    log = (RunLog.resume if ctx.resume else RunLog)(
        out / "run.json", list(groups), dict(meta or {})
    )
    targets = {machine: out / machine if nested else out for machine in groups}
    if ctx.resume and all(
        log.status(m) == TRAINED and (t / CONFIG_FILE).exists() for m, t in targets.items()
    ):
        say(f"[joint] every machine type already trained in {out}; skipped (--resume)")
        return {machine: load_system(target) for machine, target in targets.items()}
    for machine in groups:
        log.start(machine)
    jctx = ctx.for_run("joint")
    system = build()
    say(
        f"[joint] training {system.name} on {sum(map(len, groups.values()))} clips of "
        f"{len(groups)} machine "
        f"type(s): {', '.join(groups)}"
    )
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
    saved_meta = {"joint_machines": list(groups), **(meta or {})}
    _save_joint(fitted, targets, seconds, saved_meta, log, failures, say)
    if not failures:
        discard_checkpoint(jctx.checkpoint_dir)
    finish_training(groups, ctx, log, failures)
    return {machine: fitted[machine] for machine in targets}


def _save_joint(
    fitted: Mapping[str, System],
    targets: Mapping[str, Path],
    seconds: float,
    meta: Mapping[str, Any],
    log: RunLog,
    failures: dict[str, str],
    say: Say,
) -> None:
    """Save each type's system of a joint fit to its folder and log it; a type the fit returned
    no system for is logged failed (into ``failures``)."""
    for machine, target in targets.items():
        if machine not in fitted:
            failures.setdefault(machine, "the joint fit returned no system for it")
            log.failed(machine, failures[machine])
            continue
        fitted[machine].save(
            target,
            {"data_machine": machine, "train_seconds": seconds, **meta},
        )
        log.done(
            machine,
            seconds=round(seconds, 3),
            model=str(target),
            threshold=fitted[machine].threshold_,
            joint=True,
        )
        say(
            f"[{machine}] saved to {target} (joint fit {seconds:.1f} s, threshold "
            f"{fitted[machine].threshold_:.4g})"
        )


def finish_training(
    groups: Iterable[str], ctx: RunContext, log: RunLog, failures: Mapping[str, str]
) -> None:
    """The end of a training: remove empty checkpoint folders; raise naming every failed type."""
    prune_checkpoints(ctx.checkpoint_dir)
    if failures:
        listed = "; ".join(f"{m}: {r}" for m, r in failures.items())
        raise StethoscopeError(
            f"{len(failures)} of {len(list(groups))} machine type(s) failed "
            f"({listed}); see {log.path}"
        )


def train_folder(
    data: str | Path,
    build: Build,
    out: str | Path,
    ctx: RunContext,
    layout: str = "auto",
    machine: str | None = None,
    channel: str | None = None,
    val_data: str | Path | None = None,
    say: Say = say_on_stderr,
    executor: Executor | None = None,
) -> dict[str, System]:
    """``stethoscope train``: the training clips of every machine type in ``data`` (or of
    ``machine``), one model each into ``out`` (sub-folders when there are several types); see
    `train_machines`. ``val_data``: labelled clips for systems that select on them."""
    shortest = build().feature_request().min_seconds
    chosen = resolve_channel(channel)
    clips = scan(data, layout, machine, chosen, shortest)
    val = scan(val_data, layout, machine, chosen, shortest) if val_data else None
    groups = {m: training_clips(c) for m, c in by_machine(clips).items()}
    empty = [m for m, train in groups.items() if not train]
    if empty:
        raise LayoutError(f"{data}: no training clips for machine type(s) {empty}")
    nested, meta = (
        not (machine or len(groups) == 1),
        {"data": str(data), "channel": channel_name(chosen)},
    )
    return train_machines(groups, build, out, ctx, val, nested, meta, say, executor)
