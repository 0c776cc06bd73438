"""``train --engine ray``: the machine types of a data folder trained in parallel, one Ray task
each, with the resources each needs (``num_cpus`` = ``--threads``, default 1; one GPU per task
with ``--device cuda``).

Every task runs `training.fit_and_save`, the body of the local per-type loop, so a type's model
folder, its crash-safe write and its checkpoints (``OUT/.checkpoints/<machine>``) are those of a
local run; the driver keeps ``run.json`` exactly as `training.train_machines` does (``running``
here means handed to Ray) and replays each task's audio findings through the run's policy. A
joint system is one fit over every type: it runs as one task (`training.train_machines` there).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.clip import Clip
from ..data.policy import AudioPolicy, current_policy
from ..data.quality import Problem
from ..engine import RunContext, discard_checkpoint
from ..engine.runlog import RunLog
from ..errors import StethoscopeError
from ..systems.base import CONFIG_FILE, get_system
from ..training import finish_training, fit_and_save, train_machines
from ._ray import ray_session


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _task_context(ctx: RunContext) -> RunContext:
    """The context inside a task: Ray shows a task its own GPUs only, as ``cuda:0``, ...."""
    return ctx.replace(device="cuda") if ctx.device.startswith("cuda") else ctx


def _findings(policy: AudioPolicy) -> list[tuple[str, str, bool]]:
    return [(f.path, f.reason, f.action == "skipped") for f in policy.findings]


def train_one(machine: str, train: Sequence[Clip], name: str, params: Mapping[str, Any], target: str,
              ctx: RunContext, val: Sequence[Clip] | None, meta: Mapping[str, Any],
              on_bad_audio: str | None) -> dict[str, Any]:
    """A Ray task: fit and save one machine type's system. Returns ``seconds`` and ``threshold``,
    or ``error`` (a `StethoscopeError`'s message), and the audio ``findings`` to replay."""
    policy = AudioPolicy(on_bad_audio, say=lambda message: None)
    ctx = _task_context(ctx)
    ctx.apply_threads()
    with policy.active():
        try:
            system, seconds = fit_and_save(machine, train, lambda: get_system(name, **params), Path(target), ctx, val,
                                           meta, say=lambda message: None)
        except StethoscopeError as err:
            return {"error": str(err), "findings": _findings(policy)}
    discard_checkpoint(ctx.checkpoint_dir)
    return {"seconds": seconds, "threshold": system.threshold_, "findings": _findings(policy)}


def train_joint(groups: Mapping[str, Sequence[Clip]], name: str, params: Mapping[str, Any], out: str,
                ctx: RunContext, val: Sequence[Clip] | None, nested: bool, meta: Mapping[str, Any],
                on_bad_audio: str | None) -> dict[str, Any]:
    """A Ray task: a joint system's one fit over every type (`training.train_machines`)."""
    policy = AudioPolicy(on_bad_audio, say=lambda message: None)
    ctx = _task_context(ctx)
    ctx.apply_threads()
    with policy.active():
        try:
            train_machines(groups, lambda: get_system(name, **params), out, ctx, val, nested, meta,
                           say=lambda message: None)
        except StethoscopeError as err:
            return {"error": str(err), "findings": _findings(policy)}
    return {"findings": _findings(policy)}


def _replay(result: Mapping[str, Any], policy: AudioPolicy) -> None:
    for path, reason, unreadable in result.get("findings", []):
        policy.judge(path, [Problem(reason, unreadable)])


def train_with_ray(groups: Mapping[str, Sequence[Clip]], name: str, params: Mapping[str, Any], out: str | Path,
                   ctx: RunContext, val: Sequence[Clip] | None = None, nested: bool = True,
                   meta: Mapping[str, Any] | None = None, say: Callable[[str], None] = _say, *,
                   address: str | None = None, cpus: int | None = None) -> dict[str, Path]:
    """`training.train_machines` with one Ray task per machine type (system ``name`` built from
    ``params``); returns {machine type: model folder} of the types trained. A type that fails is
    recorded in ``run.json`` and the others go on; a `StethoscopeError` names them at the end."""
    out, meta = Path(out), dict(meta or {})
    policy = current_policy()
    resources = {"num_cpus": ctx.threads or 1, "num_gpus": 1 if ctx.device.startswith("cuda") else 0}
    targets = {machine: out / machine if nested else out for machine in groups}
    joint = get_system(name, **params).joint
    with ray_session(address, cpus) as ray:
        if joint:
            say(f"[joint] {name} is one fit over every machine type: one Ray task")
            task = ray.remote(train_joint).options(**resources)
            result = ray.get(task.remote(groups, name, params, str(out), ctx, val, nested, meta, policy.on_bad_audio))
            _replay(result, policy)
            if "error" in result:
                raise StethoscopeError(result["error"])
            return targets
        log = (RunLog.resume if ctx.resume else RunLog)(out / "run.json", list(groups), meta)
        task = ray.remote(train_one).options(**resources)
        pending: dict[Any, str] = {}
        for machine, train in groups.items():
            if ctx.resume and log.status(machine) == "trained" and (targets[machine] / CONFIG_FILE).exists():
                say(f"[{machine}] already trained in {targets[machine]}; skipped (--resume)")
                continue
            mval = [c for c in val if c.machine == machine] if val else None
            log.start(machine)
            say(f"[{machine}] training {name} on {len(train)} clips (Ray task: {resources['num_cpus']} CPU, "
                f"{resources['num_gpus']} GPU)")
            pending[task.remote(machine, train, name, params, str(targets[machine]), ctx.for_run(machine), mval,
                                meta, policy.on_bad_audio)] = machine
        failures = _collect(ray, pending, log, targets, policy, say)
    finish_training(groups, ctx, log, failures)
    return {m: t for m, t in targets.items() if log.status(m) == "trained"}


def _collect(ray: Any, pending: dict[Any, str], log: RunLog, targets: Mapping[str, Path], policy: AudioPolicy,
             say: Callable[[str], None]) -> dict[str, str]:
    """Record each task as it finishes; {machine type: reason} of those that failed. Ctrl-C marks
    the unfinished ones ``failed: interrupted`` (their checkpoints stay for ``--resume``)."""
    failures: dict[str, str] = {}
    try:
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            machine = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as err:  # a bug in the task: recorded, then raised as locally
                log.failed(machine, f"crashed: {type(err.cause).__name__}: {err.cause}")
                raise err.as_instanceof_cause() from None
            except ray.exceptions.RayError as err:  # the worker or its node was lost
                result = {"error": f"Ray lost the task ({type(err).__name__}: {str(err).splitlines()[0]})"}
            _replay(result, policy)
            if "error" in result:
                failures[machine] = result["error"]
                log.failed(machine, result["error"])
                say(f"[{machine}] failed: {result['error']}")
                continue
            log.done(machine, seconds=round(result["seconds"], 3), model=str(targets[machine]),
                     threshold=result["threshold"])
            say(f"[{machine}] saved to {targets[machine]} ({result['seconds']:.1f} s, threshold "
                f"{result['threshold']:.4g})")
    except KeyboardInterrupt:
        for machine in pending.values():
            log.failed(machine, "interrupted")
        raise
    return failures
