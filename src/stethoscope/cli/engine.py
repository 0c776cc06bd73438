"""``--engine local|ray``: where ``score`` and ``train`` run. ``ray`` scores a fleet's files on
Ray Data and trains one Ray task per machine type (`stethoscope.scale`, docs/scale_out.md);
Ray is the optional extra ``stethoscope[ray]``, imported only when asked for."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import ConfigError
from ..workflows.train import Executor, LocalExecutor
from .common import info, run_context


def add_engine_flags(p: argparse.ArgumentParser, score: bool = False) -> None:
    """``--engine``, ``--address``, ``--ray-cpus`` (and ``score``'s ``--out``)."""
    g = p.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default): this process; ray: a Ray cluster or a local Ray "
        "(pip install 'stethoscope[ray]'; docs/scale_out.md)",
    )
    g.add_argument(
        "--address",
        help="with --engine ray: an existing cluster (auto, "
        "ray://HOST:10001); default: start a local Ray",
    )
    g.add_argument(
        "--ray-cpus",
        type=int,
        metavar="N",
        help="with --engine ray: CPUs of the local Ray (default: the cores this process may use)",
    )
    if score:
        g.add_argument(
            "--out",
            help="with --engine ray: folder for scores.parquet, scores.csv "
            "and the DCASE result CSVs",
        )


def check_engine(args: argparse.Namespace) -> None:
    """Before any audio is read: Ray importable for ``--engine ray`` (else the install hint);
    Ray-only flags given to the local engine are an error, not ignored; ``--engine ray`` with
    ``--data-parallel N`` is refused (a Ray task per machine type cannot start its own Ray Train
    workers: train the types one by one with ``--data-parallel``, or the fleet with ``--engine
    ray``)."""
    if args.engine == "ray":
        if getattr(args, "data_parallel", 1) > 1:
            raise ConfigError(
                "--engine ray and --data-parallel: choose one (--engine ray trains "
                "one machine type per Ray task; --data-parallel N splits one "
                "training over N Ray Train workers)"
            )
        from ..scale._ray import import_ray

        import_ray()
        return
    given = [
        flag
        for flag, key in (("--address", "address"), ("--ray-cpus", "ray_cpus"), ("--out", "out"))
        if getattr(args, key, None) is not None and (key != "out" or args.verb == "score")
    ]
    if given:
        raise ConfigError(f"{', '.join(given)}: only with --engine ray")


def score_on_ray(args: argparse.Namespace) -> int:
    """``score --engine ray``: every file of PATHS by its machine type's model in --model."""
    from ..scale.ray_score import score_with_ray

    if not args.out:
        raise ConfigError(
            "score --engine ray needs --out DIR (scores.parquet, scores.csv, DCASE result CSVs)"
        )
    if args.csv:
        raise ConfigError(
            "score --engine ray writes OUT/scores.csv; give --out DIR instead of --csv"
        )
    ctx = run_context(args, progress=False, local_device=False)
    started = time.perf_counter()
    _, rows = score_with_ray(
        args.paths,
        args.model,
        args.out,
        ctx=ctx,
        channel=args.channel,
        address=args.address,
        cpus=args.ray_cpus,
    )
    seconds = time.perf_counter() - started
    per_machine: dict[str, list[int]] = {}
    for r in rows:
        per_machine.setdefault(r.machine, []).append(r.decision)
    print(f"{'machine':<16}{'files':>8}{'anomalies':>11}")
    for machine, decisions in sorted(per_machine.items()):
        print(f"{machine:<16}{len(decisions):>8}{sum(decisions):>11}")
    info(args)(
        f"scored {len(rows)} file(s) on Ray in {seconds:.1f} s; outputs: "
        f"{Path(args.out) / 'scores.parquet'}, "
        f"{Path(args.out) / 'scores.csv'}"
    )
    return 0


def executor(args: argparse.Namespace) -> Executor:
    """Where ``train`` fits: this process (``--engine local``) or one Ray task per machine type."""
    if args.engine == "local":
        return LocalExecutor()
    from ..scale.ray_train import RayExecutor

    return RayExecutor(address=args.address, cpus=args.ray_cpus)
