"""The application layer from Python: train a data folder, score files, evaluate a folder,
without the command line (`workflows.train.train_folder`, `workflows.scoring`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from stethoscope.workflows.scoring import evaluate_folder, score_paths
from tests.workflows.conftest import CTX


def test_score_paths_scores_a_folder_and_writes_the_table(
    models: Path, toy_root: Path, tmp_path: Path
) -> None:
    folder = toy_root / "fan" / "test"
    scores = score_paths(models / "fan", [folder], CTX, csv=tmp_path / "scores.csv")
    assert len(scores.rows) == len(scores.paths) == len(list(folder.glob("*.wav")))
    assert {r.machine for r in scores.rows} == {"fan"} and scores.system.threshold_ is not None
    with open(tmp_path / "scores.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["score"]) for r in table] == [r.score for r in scores.rows]


def test_a_channel_other_than_the_models_is_a_python_warning(models: Path, toy_root: Path) -> None:
    with pytest.warns(
        UserWarning, match="the model was trained on channel 0; reading channel mean as asked"
    ):
        score_paths(models / "fan", [toy_root / "fan" / "test"], CTX, channel="mean")


def test_evaluate_folder_uses_each_machine_types_model(
    models: Path, toy_root: Path, tmp_path: Path
) -> None:
    result = evaluate_folder(toy_root, models, tmp_path, CTX)
    assert json.loads((tmp_path / "results.json").read_text())["models"] == result["models"]
    assert set(result["models"]) == {"fan", "gearbox"} and (tmp_path / "scores.csv").is_file()


def test_scoring_opens_each_file_once(models: Path, toy_root: Path, tmp_path: Path) -> None:
    """The hash, the header check and the decode use the bytes of one read (issue 23): with no
    cache, with a cold cache and with a warm one (whose hit checks the header from those bytes)."""
    from stethoscope.engine import RunContext
    from tests.opens import counting_opens

    files = sorted((toy_root / "fan" / "test").glob("*.wav"))[:3]
    for ctx in (
        CTX,
        RunContext(progress=False, threads=1, cache_dir=tmp_path / "cache"),
        RunContext(progress=False, threads=1, cache_dir=tmp_path / "cache"),
    ):
        with counting_opens() as opens:
            scores = score_paths(models / "fan", files, ctx)
        assert len(scores.rows) == 3
        assert [opens.of(f) for f in files] == [1, 1, 1], ctx.cache_dir
    with counting_opens() as opens:
        evaluate_folder(toy_root, models, tmp_path / "eval", CTX, machine="fan")
    tested = sorted((toy_root / "fan" / "test").glob("*.wav"))
    assert {opens.of(f) for f in tested} == {1}
