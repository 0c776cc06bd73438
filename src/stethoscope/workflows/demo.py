"""``stethoscope demo``: a toy-factory data set, one model per machine type, their evaluation
and the HTML report, in one folder."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine import RunContext
from ..evaluation.dcase_io import ScoredClip
from ..evaluation.outputs import finish_evaluation
from .data import by_machine, scan
from .fitting import say_on_stderr
from .scoring import scored
from .spec import SystemSpec
from .train import Say, train_machines


@dataclass
class DemoResult:
    """What the demo wrote: its data set, the evaluation (``results.json``), the report, its
    time."""

    data: Path
    results: dict[str, Any]
    report: Path
    seconds: float


def run_demo(
    spec: SystemSpec,
    out: Path,
    ctx: RunContext,
    n_train: int = 40,
    n_test: int = 30,
    say: Say = say_on_stderr,
) -> DemoResult:
    """Write a toy-factory data set into ``out/data`` (seed ``ctx.seed``), train ``spec`` per
    machine type into ``out/models``, evaluate the test clips into ``out`` and build
    ``out/report.html``."""
    from ..data.toy_factory import make_toy_dataset
    from ..reports.html import build_report

    started = time.perf_counter()
    data = make_toy_dataset(out / "data", seed=ctx.seed, n_train=n_train, n_test=n_test)
    say(f"toy factory data set: {data}")
    groups = by_machine(scan(data))
    train = {m: [c for c in clips if c.split == "train"] for m, clips in groups.items()}
    systems = train_machines(
        train, spec.build, out / "models", ctx, meta={"data": str(data)}, say=say
    )
    rows: list[ScoredClip] = []
    paths: list[Path] = []
    models: dict[str, str] = {}
    thresholds: dict[str, float | None] = {}
    for machine, clips in groups.items():
        test = [c for c in clips if c.split == "test"]
        models[machine], thresholds[machine] = (
            str((out / "models" / machine).resolve()),
            systems[machine].threshold_,
        )
        kept, scored_rows = scored(systems[machine], test, ctx)
        rows, paths = rows + scored_rows, paths + kept
    results = finish_evaluation(
        out,
        rows,
        {
            "system": spec.name,
            "data": str(data),
            "models": models,
            "thresholds": thresholds,
            "config": spec.build().get_params(),
            "seed": ctx.seed,
        },
        paths,
    )
    report = build_report(out, out / "report.html")
    return DemoResult(Path(data), results, report, time.perf_counter() - started)
