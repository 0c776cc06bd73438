"""The K-fold benchmark of one or several systems on labelled sets (``stethoscope bench``).

`bench` runs the protocol of `evaluation.crossval` for one system and writes ``bench.json``
(with ``score_modes``: one ``<mode>/bench.json`` per mode). `bench_systems` runs it for several
systems on the same folds (same data, seed and fold count), each into ``OUT/<label>/``, then
compares them with paired bootstrap intervals of every AUC difference (`evaluation.compare`)
into ``OUT/comparison.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.clip import Clip
from ..engine import RunContext, prune_checkpoints
from ..evaluation.compare import paired_bootstrap
from ..evaluation.crossval import cross_validate, cross_validate_joint, group_sets
from ..fsutil import atomic_write_json
from ..systems.base import System
from ..utils import run_metadata
from .spec import SystemSpec, system_specs

COMPARISON_FILE = "comparison.json"
__all__ = [
    "COMPARISON_FILE",
    "SystemSpec",
    "bench",
    "bench_systems",
    "comparison_table",
    "system_specs",
]


def bench(
    clips: Sequence[Clip],
    spec: SystemSpec,
    out: Path,
    ctx: RunContext,
    folds: int = 5,
    group: str = "machine",
    score_modes: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str | None, dict[str, Any]]:
    """The K-fold protocol for one system on every set of ``clips``; writes ``out/bench.json``
    (or ``out/<mode>/bench.json``) as it goes and returns the reports by mode."""
    probe = spec.build()
    modes: list[str | None] = list(score_modes) if score_modes else [None]
    reports = {m: _new_report(spec, probe, m, folds, ctx.seed, meta) for m in modes}
    paths = {m: out / m / "bench.json" if m else out / "bench.json" for m in modes}
    latest: list[System] = [
        probe
    ]  # the latest fold's system only (earlier ones are freed), for its encoder tag

    def make() -> System:
        latest[:] = [spec.build()]
        return latest[0]

    joint_sets: dict[str, list[Clip]] = {}  # a joint system: every set in one run of folds
    for name, set_clips in group_sets(clips, group).items():
        if sum(c.label == 0 for c in set_clips) < 2 or not any(c.label == 1 for c in set_clips):
            for report in reports.values():
                report.setdefault("skipped", {})[name] = (
                    "needs at least 2 normal and 1 anomalous clip"
                )
            continue
        if probe.joint:
            joint_sets[name] = set_clips
            continue
        say(f"[{name}] {folds}-fold benchmark of {spec.label or spec.name}")
        res = cross_validate(set_clips, make, folds, ctx, score_modes=score_modes, name=name)
        _record(reports, score_modes, name, res, latest[0], say)
        _write(reports, paths, ctx)
    if joint_sets:
        say(
            f"[joint] {folds}-fold benchmark of {spec.label or spec.name} over {len(joint_sets)} "
            "set(s), one joint fit per fold"
        )
        results, fitted = cross_validate_joint(
            joint_sets, make, folds, ctx, score_modes=score_modes
        )
        for report in reports.values():
            report["joint_fit"] = True
        for name, res in results.items():
            _record(reports, score_modes, name, res, next(iter(fitted.values())), say)
    prune_checkpoints(ctx.checkpoint_dir)
    for rep in reports.values():
        _add_means(rep)
    _write(reports, paths, ctx)
    return reports


def _write(
    reports: dict[str | None, dict[str, Any]], paths: dict[str | None, Path], ctx: RunContext
) -> None:
    """Every mode's report, with its run metadata, to its ``bench.json`` (crash-safe)."""
    for m, report in reports.items():
        run = {**run_metadata(report["params"], ctx.seed), "runtime": ctx.metadata()}
        atomic_write_json(paths[m], {**report, "run": run})


def _record(
    reports: dict[str | None, dict[str, Any]],
    score_modes: Sequence[str] | None,
    name: str,
    res: dict[str, Any],
    fitted: System,
    say: Callable[[str], None],
) -> None:
    """One set's cross-validated result (per score mode) into the reports, with the encoder
    tag of the system that produced it."""
    per_mode: dict[str | None, Any] = {None: res}
    if score_modes:
        per_mode = {m: res[m] for m in score_modes}
    encoder = {k: v for k, v in fitted.extra_state().items() if k in ("encoder", "encoder_weights")}
    for m, report in reports.items():
        report["sets"][name] = per_mode[m]
        report.update(encoder)
        r = per_mode[m]
        say(
            f"[{name}]{' ' + m if m else ''} AUC {r['auc']:.3f}  pAUC {r['pauc']:.3f}  "
            f"(train {r['train_seconds']:.1f} s/fold)"
        )


def _new_report(
    spec: SystemSpec,
    probe: System,
    mode: str | None,
    folds: int,
    seed: int,
    meta: dict[str, Any] | None,
) -> dict[str, Any]:
    """A bench report before any set is run: the system, its parameters (with ``mode``), the
    protocol."""
    params = {**probe.get_params(), **({"score_mode": mode} if mode else {})}
    return {
        "system": spec.name,
        "label": spec.label,
        "params": params,
        "folds": folds,
        "seed": seed,
        **(meta or {}),
        "sets": {},
    }


def _add_means(report: dict[str, Any]) -> None:
    """A bench report's mean AUC and pAUC over its sets (None without any)."""
    sets = list(report["sets"].values())
    report["mean_auc"] = float(np.mean([s["auc"] for s in sets])) if sets else None
    report["mean_pauc"] = float(np.mean([s["pauc"] for s in sets])) if sets else None


def bench_systems(
    clips: Sequence[Clip],
    specs: Sequence[SystemSpec],
    out: Path,
    ctx: RunContext,
    folds: int = 5,
    group: str = "machine",
    meta: dict[str, Any] | None = None,
    n_boot: int = 2000,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Every system on the same folds into ``out/<label>/bench.json``, then their paired
    comparison into ``out/comparison.json``; returns the comparison."""
    reports = {}
    for spec in specs:
        ctx_k = ctx.replace(
            checkpoint_dir=ctx.checkpoint_dir / spec.folder if ctx.checkpoint_dir else None
        )
        reports[spec.label] = bench(
            clips, spec, out / spec.folder, ctx_k, folds, group, meta=meta, say=say
        )[None]
    comparison = {
        **paired_bootstrap(reports, n_boot=n_boot, seed=ctx.seed),
        "folders": {s.label: s.folder for s in specs},
        "data": (meta or {}).get("data"),
    }
    atomic_write_json(out / COMPARISON_FILE, comparison)
    return comparison


def comparison_table(comparison: dict[str, Any]) -> str:
    """Plain-text table: each system's mean AUC and interval, then each pair's difference."""
    level = round(100 * comparison["level"])
    lines = [f"{'system':<28}{'mean AUC':>9}   {level} % interval"]
    for name, m in comparison["mean_auc"].items():
        lines.append(f"{name:<28}{m['auc']:>9.3f}   [{m['low']:.3f}, {m['high']:.3f}]")
    lines += ["", f"{'difference (a - b)':<44}{'diff':>7}   {level} % interval"]
    for p in comparison["pairs"]:
        verdict = (
            "within noise" if p["within_noise"] else ("a better" if p["diff"] > 0 else "b better")
        )
        lines.append(
            f"{p['a'] + ' - ' + p['b']:<44}{p['diff']:>+7.3f}   [{p['low']:+.3f}, "
            f"{p['high']:+.3f}]  {verdict}"
        )
    return "\n".join(lines)
