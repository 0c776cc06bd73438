"""The K-fold benchmark protocol's fold systems fit their threshold in-sample: AUCs ignore
the threshold, so a cross-fitted one would only train K more models per fold."""

from __future__ import annotations

from pathlib import Path

from stethoscope.data.layouts import scan
from stethoscope.engine import RunContext
from stethoscope.evaluation.crossval import cross_validate
from stethoscope.systems import System, get_system


def test_bench_folds_train_no_threshold_copies(toy_root: Path) -> None:
    clips = scan(toy_root, machine="fan", split="test")
    made: list[System] = []

    def make() -> System:
        made.append(get_system("dcase_ae", epochs=1, batch_size=64))  # crossfit by default
        return made[-1]

    result = cross_validate(clips, make, folds=2, ctx=RunContext(progress=False, threads=1))
    assert len(made) == 2 and 0 <= result["auc"] <= 1
    assert all(
        s.run_["threshold"]["fit"] == "in_sample" and "folds" not in s.run_["threshold"]
        for s in made
    )
