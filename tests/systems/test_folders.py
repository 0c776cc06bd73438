"""Model folders of ``train --out``: nested, single (named by its run record), hidden folders
ignored, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stethoscope.errors import CheckpointError
from stethoscope.systems.folders import model_folders


def _model(folder: Path, machine: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"run": {"data_machine": machine} if machine else {}})
    )
    return folder


def test_nested_and_single_model_folders(tmp_path: Path) -> None:
    fan, pump = _model(tmp_path / "out" / "fan"), _model(tmp_path / "out" / "pump")
    _model(tmp_path / "out" / ".checkpoints")  # hidden: never a model
    (tmp_path / "out" / "notes").mkdir()  # no config: not a model
    assert model_folders(tmp_path / "out") == {"fan": fan, "pump": pump}
    single = _model(tmp_path / "one", machine="valve")
    assert model_folders(single) == {"valve": single}
    assert model_folders(_model(tmp_path / "gearbox")) == {"gearbox": tmp_path / "gearbox"}


def test_missing_empty_and_corrupt_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"--model .*missing: no such folder"):
        model_folders(tmp_path / "missing", flag="--model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"--models .*empty: no trained model"):
        model_folders(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt model config"):
        model_folders(tmp_path / "bad")


def test_model_folder_for_picks_the_one_model_or_the_machine_types(tmp_path: Path) -> None:
    from stethoscope.systems.folders import model_folder_for

    (tmp_path / "fan").mkdir()
    (tmp_path / "fan" / "config.json").write_text("{}")
    assert model_folder_for(tmp_path, "fan") == tmp_path / "fan"
    assert (
        model_folder_for(tmp_path / "fan", "pump") == tmp_path / "fan"
    )  # one model scores every type
    with pytest.raises(CheckpointError, match="no model for machine type 'pump'"):
        model_folder_for(tmp_path, "pump")
