"""run.json: progress of a multi-machine run, on disk after every change, and resuming from it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from stethoscope.engine.runlog import RunLog
from stethoscope.errors import CheckpointError


def on_disk(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def statuses(path: Path) -> dict[str, str]:
    return {item: rec["status"] for item, rec in on_disk(path)["items"].items()}


def test_new_log_lists_every_item_as_not_reached(tmp_path: Path) -> None:
    path = tmp_path / "out" / "run.json"
    RunLog(path, ["fan", "pump"], meta={"system": "dcase_ae"})
    data = on_disk(path)
    assert statuses(path) == {"fan": "not reached", "pump": "not reached"}
    assert data["meta"] == {"system": "dcase_ae"}
    assert data["started"].endswith("Z")


def test_every_change_is_on_disk_at_once(tmp_path: Path) -> None:
    """What an interrupted train leaves behind: trained, running and not-reached items."""
    path = tmp_path / "run.json"
    log = RunLog(path, ["fan", "pump", "valve", "slider"])
    log.start("fan")
    assert statuses(path)["fan"] == "running"
    log.done("fan", seconds=12.5, model=tmp_path / "fan")
    log.start("pump")
    log.failed("pump", "no training clips")
    log.start("valve")
    assert statuses(path) == {
        "fan": "trained",
        "pump": "failed: no training clips",
        "valve": "running",
        "slider": "not reached",
    }
    fan = on_disk(path)["items"]["fan"]
    assert (fan["seconds"], fan["model"]) == (12.5, str(tmp_path / "fan"))
    assert {"started", "finished"} <= fan.keys()
    assert [log.status(m) for m in ("fan", "pump", "slider")] == [
        "trained",
        "failed: no training clips",
        "not reached",
    ]


def test_resume_keeps_trained_items_and_redoes_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    first = RunLog(path, ["fan", "pump", "valve", "gearbox"], meta={"seed": 0})
    first.start("fan")
    first.done("fan", seconds=3.0)
    first.start("gearbox")
    first.done("gearbox", seconds=4.0)
    first.start("pump")
    first.failed("pump", "out of memory")
    first.start("valve")  # interrupted here

    log = RunLog.resume(path, ["fan", "pump", "valve", "slider"])
    assert statuses(path) == {
        "fan": "trained",
        "pump": "not reached",
        "valve": "not reached",
        "slider": "not reached",
        "gearbox": "trained",
    }
    assert [m for m in ("fan", "pump", "valve", "slider") if log.status(m) != "trained"] == [
        "pump",
        "valve",
        "slider",
    ]
    data = on_disk(path)
    assert data["items"]["fan"]["seconds"] == 3.0
    assert data["started"] == first.started
    assert len(data["resumed"]) == 1
    assert data["meta"] == {"seed": 0}  # kept when the resumed run passes none

    RunLog.resume(path, ["fan"], meta={"seed": 1})
    assert on_disk(path)["meta"] == {"seed": 1}
    assert len(on_disk(path)["resumed"]) == 2


def test_resume_without_run_json_starts_a_new_run(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    log = RunLog.resume(path, ["fan"], meta={"seed": 0})
    assert log.status("fan") == "not reached"
    assert on_disk(path)["resumed"] == []


@pytest.mark.parametrize(
    "content",
    [
        b'{"started": "2024-01-01T00:00:00Z", "items": {"fan": {"status": "trai',
        b"\xff\xfe",
        b"[]",
        b'{"started": "2024-01-01T00:00:00Z", "items": {"fan": "trained"}}',
        b'{"items": {}}',
    ],
)
def test_corrupt_run_json_is_a_checkpoint_error_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        RunLog.resume(path, ["fan"])
    assert path.read_bytes() == content  # left for the user to inspect


def test_unknown_item_is_an_error(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "run.json", ["fan"])
    with pytest.raises(KeyError, match="pump"):
        log.start("pump")
