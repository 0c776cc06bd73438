"""``train --engine ray``: the machine types of a data folder trained in parallel, one Ray task
each, with the resources each needs (``num_cpus`` = ``--threads``, default 1; one GPU per task
with ``--device cuda``).

`RayExecutor` is an executor of `workflows.train.train_machines`: every task runs
`workflows.fitting.fit_and_save`, the body of the local executor, so a type's model folder, its
crash-safe write and its checkpoints (``OUT/.checkpoints/<machine>``) are those of a local run;
the driver keeps ``run.json`` through the one orchestrator (``running`` here means handed to
Ray) and replays each task's audio findings through the run's policy. A joint system is one fit
over every type: it runs as one task (the local executor there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.clip import Clip
from ..data.policy import AudioPolicy, current_policy
from ..data.quality import Problem
from ..engine import RunContext, discard_checkpoint
from ..errors import StethoscopeError
from ..systems.base import System
from ..workflows.fitting import fit_and_save, say_on_stderr
from ..workflows.spec import SystemSpec
from ..workflows.train import Job, Outcome, train_machines
from ._ray import ray_session

Build = Callable[[], System]


def _quiet(message: str) -> None:
    del message


def _task_context(ctx: RunContext) -> RunContext:
    """The context inside a task: Ray shows a task its own GPUs only, as ``cuda:0``, ...."""
    return ctx.replace(device="cuda") if ctx.device.startswith("cuda") else ctx


def _findings(policy: AudioPolicy) -> list[tuple[str, str, bool]]:
    return [(f.path, f.reason, f.action == "skipped") for f in policy.findings]


def train_one(
    machine: str,
    train: Sequence[Clip],
    build: Build,
    target: str,
    ctx: RunContext,
    val: Sequence[Clip] | None,
    meta: Mapping[str, Any],
    on_bad_audio: str | None,
) -> dict[str, Any]:
    """A Ray task: fit and save one machine type's system. Returns ``seconds`` and ``threshold``,
    or ``error`` (a `StethoscopeError`'s message), and the audio ``findings`` to replay."""
    policy = AudioPolicy(on_bad_audio, say=_quiet)
    ctx = _task_context(ctx)
    ctx.apply_threads()
    with policy.active():
        try:
            system, seconds = fit_and_save(
                machine, train, build, Path(target), ctx, val, meta, say=_quiet
            )
        except StethoscopeError as err:
            return {"error": str(err), "findings": _findings(policy)}
    discard_checkpoint(ctx.checkpoint_dir)
    return {"seconds": seconds, "threshold": system.threshold_, "findings": _findings(policy)}


def train_joint(
    groups: Mapping[str, Sequence[Clip]],
    build: Build,
    out: str,
    ctx: RunContext,
    val: Sequence[Clip] | None,
    nested: bool,
    meta: Mapping[str, Any],
    on_bad_audio: str | None,
) -> dict[str, Any]:
    """A Ray task: a joint system's one fit over every type (`train_machines`, local executor)."""
    policy = AudioPolicy(on_bad_audio, say=_quiet)
    ctx = _task_context(ctx)
    ctx.apply_threads()
    with policy.active():
        try:
            train_machines(groups, build, out, ctx, val, nested, meta, say=_quiet)
        except StethoscopeError as err:
            return {"error": str(err), "findings": _findings(policy)}
    return {"findings": _findings(policy)}


def _replay(result: Mapping[str, Any], policy: AudioPolicy) -> None:
    for path, reason, unreadable in result.get("findings", []):
        policy.judge(path, [Problem(reason, unreadable)])


class RayExecutor:
    """One Ray task per machine type on a cluster (``address``) or a local Ray (``cpus``)."""

    def __init__(self, address: str | None = None, cpus: int | None = None) -> None:
        self.address, self.cpus = address, cpus

    @staticmethod
    def _resources(ctx: RunContext) -> dict[str, int]:
        return {"num_cpus": ctx.threads or 1, "num_gpus": 1 if ctx.device.startswith("cuda") else 0}

    def run(
        self, jobs: Iterator[Job], build: Build, meta: Mapping[str, Any], say: Callable[[str], None]
    ) -> Iterator[Outcome]:
        """Hand every job to Ray at once, then yield each outcome as its task finishes."""
        policy = current_policy()
        name = build().name
        with ray_session(self.address, self.cpus) as ray:
            pending: dict[Any, str] = {}
            task: Any = None
            for job in jobs:
                resources = self._resources(job.ctx)
                task = task or ray.remote(train_one).options(**resources)
                say(
                    f"[{job.machine}] training {name} on {len(job.train)} clips "
                    f"(Ray task: {resources['num_cpus']} CPU, {resources['num_gpus']} GPU)"
                )
                pending[
                    task.remote(
                        job.machine,
                        job.train,
                        build,
                        str(job.target),
                        job.ctx,
                        job.val,
                        dict(meta),
                        policy.on_bad_audio,
                    )
                ] = job.machine
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                machine = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except (
                    ray.exceptions.RayTaskError
                ) as err:  # a bug in the task: recorded, then raised as locally
                    yield Outcome(
                        machine,
                        error=f"crashed: {type(err.cause).__name__}: {err.cause}",
                        crash=err.as_instanceof_cause(),
                    )
                    return
                except ray.exceptions.RayError as err:  # the worker or its node was lost
                    result = {
                        "error": "Ray lost the task "
                        f"({type(err).__name__}: {str(err).splitlines()[0]})"
                    }
                _replay(result, policy)
                if "error" in result:
                    yield Outcome(machine, error=result["error"])
                else:
                    yield Outcome(machine, result["seconds"], result["threshold"])

    def skipped(self, target: Path) -> System | None:
        """Nothing is loaded for a type skipped on resume: its model stays in its folder."""
        del target
        return None

    def train_joint(
        self,
        groups: Mapping[str, Sequence[Clip]],
        build: Build,
        out: Path,
        ctx: RunContext,
        val: Sequence[Clip] | None,
        nested: bool,
        meta: Mapping[str, Any] | None,
        say: Callable[[str], None],
    ) -> dict[str, System]:
        """A joint system: its one fit as one Ray task, which keeps ``run.json`` itself."""
        policy = current_policy()
        with ray_session(self.address, self.cpus) as ray:
            say(f"[joint] {build().name} is one fit over every machine type: one Ray task")
            task = ray.remote(train_joint).options(**self._resources(ctx))
            result = ray.get(
                task.remote(
                    groups, build, str(out), ctx, val, nested, dict(meta or {}), policy.on_bad_audio
                )
            )
            _replay(result, policy)
        if "error" in result:
            raise StethoscopeError(result["error"])
        return {}


def train_with_ray(
    groups: Mapping[str, Sequence[Clip]],
    name: str,
    params: Mapping[str, Any],
    out: str | Path,
    ctx: RunContext,
    val: Sequence[Clip] | None = None,
    nested: bool = True,
    meta: Mapping[str, Any] | None = None,
    say: Callable[[str], None] = say_on_stderr,
    *,
    address: str | None = None,
    cpus: int | None = None,
) -> dict[str, Path]:
    """`train_machines` with one Ray task per machine type (system ``name`` built from ``params``);
    returns {machine type: model folder}. A type that fails is recorded in ``run.json`` and the
    others go on; a `StethoscopeError` names them at the end."""
    spec = SystemSpec(name, dict(params), name)
    train_machines(
        groups, spec.build, out, ctx, val, nested, meta, say, executor=RayExecutor(address, cpus)
    )
    return {machine: Path(out) / machine if nested else Path(out) for machine in groups}
