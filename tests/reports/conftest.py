"""Fixtures of the report tests: a tiny trained model, clips on disk, results folders as `evaluate`
writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stethoscope.data.clip import Clip
from stethoscope.engine import RunContext
from stethoscope.evaluation.dcase_io import ScoredClip
from stethoscope.evaluation.evaluate import evaluate
from stethoscope.systems import get_system

SR = 16_000
QUIET = RunContext(progress=False)


def _wav(path: Path, seed: int, anomalous: bool = False, seconds: float = 2.0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)
    if anomalous:  # a 3 kHz whine in the second half
        x += 0.3 * np.sin(2 * np.pi * 3000 * t) * (t > seconds / 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR)
    return path


def _write_scores(path: Path, rows: list[ScoredClip], paths: list[Path]) -> None:
    lines = ["file,path,machine,section,domain,label,score,decision"]
    for r, p in zip(rows, paths, strict=True):
        label = "" if r.label is None else r.label
        lines.append(
            f"{r.file},{p},{r.machine},{r.section_tag},{r.domain or ''},{label},"
            f"{r.score!r},{r.decision}"
        )
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A trained tiny dcase_ae for "fan", test clips of "fan" and "gearbox" (whose model is
    missing). Read-only for the tests: each writes its results folder under its own tmp_path."""
    root = tmp_path_factory.mktemp("reports")
    train = [
        Clip(_wav(root / "data/fan/train" / f"normal_{i}.wav", i), "fan", split="train")
        for i in range(3)
    ]
    system = get_system("dcase_ae", epochs=2, batch_size=32)
    system.fit(train, ctx=RunContext(progress=False, cache_dir=root / "cache"))
    system.save(root / "models/fan")
    test = {"fan": [], "gearbox": []}
    for machine in test:
        for i in range(8):
            anomalous, domain = i >= 4, ("source", "target")[i % 2]
            name = f"section_00_{domain}_test_{'anomaly' if anomalous else 'normal'}_{i:04d}.wav"
            path = _wav(root / "data" / machine / "test" / name, 100 + i, anomalous)
            test[machine].append(
                Clip(path, machine, "00", domain, "test", int(anomalous), layout="dcase2022")
            )
    return root, system, test


def _results_dir(
    root: Path, system, test: dict[str, list[Clip]], out: Path, labelled: bool = True
) -> Path:
    """A results folder in ``out`` like `evaluate` writes, pointing at the models under ``root``."""
    out.mkdir()
    rows, paths = [], []
    for machine, clips in test.items():
        scores = system.score(clips, QUIET)
        if machine == "gearbox":
            scores = scores + np.linspace(0, 1, len(scores))  # different numbers from fan's
        for c, s in zip(clips, scores, strict=True):
            rows.append(
                ScoredClip(
                    c.name,
                    machine,
                    c.section,
                    c.label if labelled else None,
                    c.domain,
                    float(s),
                    int(s > system.threshold_),
                    layout=c.layout,
                )
            )
            paths.append(c.path)
    result = {
        "system": "dcase_ae",
        "data": str(root / "data"),
        "models": {"fan": str(root / "models/fan"), "gearbox": str(root / "models/gearbox")},
        "thresholds": {"fan": system.threshold_, "gearbox": system.threshold_},
        **evaluate(rows),
        "run": {
            "config": system.get_params(),
            "seed": 0,
            "versions": {"numpy": np.__version__},
            "command": ["stethoscope", "demo"],
        },
    }
    (out / "results.json").write_text(json.dumps(result))
    _write_scores(out / "scores.csv", rows, paths)
    return out


@pytest.fixture
def results_folder(workspace) -> Callable[..., Path]:
    """``make(test, out, labelled=True)``: a results folder at ``out`` of the clips ``test``
    (machine -> clips)."""
    root, system, _ = workspace

    def make(test: dict[str, list[Clip]], out: Path, labelled: bool = True) -> Path:
        return _results_dir(root, system, test, out, labelled)

    return make


@pytest.fixture(scope="session")
def bench_dir(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT/mse/bench.json and OUT/mahala/bench.json of a real 2-fold benchmark of both toy
    machines."""
    from stethoscope.cli import main as cli_main

    out = tmp_path_factory.mktemp("bench") / "out"
    assert (
        cli_main(
            [
                "bench",
                "--data",
                str(toy_root),
                "--system",
                "dcase_ae",
                "--folds",
                "2",
                "--score-modes",
                "mse,mahala",
                "--out",
                str(out),
                "--no-cache",
                "--set",
                "epochs=2",
                "batch_size=64",
                "--threads",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    return out
