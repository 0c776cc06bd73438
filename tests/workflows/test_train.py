"""The training orchestrator (`workflows.train.train_machines`) with any executor: one run log,
the resume-skip, failures recorded while the other types go on, interruptions and crashes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stethoscope.engine import RunContext
from stethoscope.errors import StethoscopeError
from stethoscope.systems import get_system
from stethoscope.workflows.train import Job, Outcome, train_machines

GROUPS: dict[str, list] = {"fan": [], "gearbox": [], "pump": []}


class Scripted:
    """An executor that fits nothing: each job ends as ``script`` says (default trained)."""

    def __init__(self, script: Mapping[str, str] | None = None) -> None:
        self.script = dict(script or {})
        self.jobs: list[Job] = []

    def run(
        self, jobs: Iterator[Job], build: Any, meta: Mapping[str, Any], say: Any
    ) -> Iterator[Outcome]:
        for job in jobs:
            self.jobs.append(job)
            how = self.script.get(job.machine, "trained")
            if how == "interrupt":
                raise KeyboardInterrupt
            if how == "crash":
                yield Outcome(
                    job.machine, error="crashed: ValueError: a bug", crash=ValueError("a bug")
                )
            elif how == "fail":
                yield Outcome(job.machine, error="no clips")
            else:
                (job.target / "config.json").parent.mkdir(parents=True, exist_ok=True)
                (job.target / "config.json").write_text("{}")
                yield Outcome(job.machine, 1.5, 0.25)

    def skipped(self, target: Path) -> None:
        return None

    def train_joint(self, *args: Any) -> dict:
        raise AssertionError("not a joint system")


def _build() -> Any:
    return get_system("mel_stats")


def _status(out: Path) -> dict[str, str]:
    return {m: r["status"] for m, r in json.loads((out / "run.json").read_text())["items"].items()}


def test_a_failed_type_is_recorded_and_the_others_train(tmp_path: Path) -> None:
    executor = Scripted({"gearbox": "fail"})
    said: list[str] = []
    with pytest.raises(
        StethoscopeError, match=r"1 of 3 machine type\(s\) failed \(gearbox: no clips\)"
    ):
        train_machines(
            GROUPS, _build, tmp_path, RunContext(progress=False), say=said.append, executor=executor
        )
    assert _status(tmp_path) == {"fan": "trained", "gearbox": "failed: no clips", "pump": "trained"}
    assert [j.ctx.checkpoint_dir for j in executor.jobs] == [None] * 3
    assert (
        "[gearbox] failed: no clips" in said
        and f"[fan] saved to {tmp_path / 'fan'} (1.5 s, threshold 0.25)" in said
    )


def test_resume_skips_the_trained_types_whatever_the_executor(tmp_path: Path) -> None:
    with pytest.raises(StethoscopeError):
        train_machines(
            GROUPS,
            _build,
            tmp_path,
            RunContext(progress=False),
            say=lambda m: None,
            executor=Scripted({"gearbox": "fail"}),
        )
    again = Scripted()
    train_machines(
        GROUPS,
        _build,
        tmp_path,
        RunContext(progress=False, resume=True),
        say=lambda m: None,
        executor=again,
    )
    assert [j.machine for j in again.jobs] == ["gearbox"] and set(_status(tmp_path).values()) == {
        "trained"
    }


def test_an_interruption_marks_the_running_type_and_leaves_the_rest(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_machines(
            GROUPS,
            _build,
            tmp_path,
            RunContext(progress=False),
            say=lambda m: None,
            executor=Scripted({"gearbox": "interrupt"}),
        )
    assert _status(tmp_path) == {
        "fan": "trained",
        "gearbox": "failed: interrupted",
        "pump": "not reached",
    }


def test_a_crash_is_recorded_then_raised(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a bug"):
        train_machines(
            GROUPS,
            _build,
            tmp_path,
            RunContext(progress=False),
            say=lambda m: None,
            executor=Scripted({"fan": "crash"}),
        )
    assert _status(tmp_path)["fan"] == "failed: crashed: ValueError: a bug"


def test_one_type_writes_into_out_itself(tmp_path: Path) -> None:
    executor = Scripted()
    train_machines(
        {"fan": []},
        _build,
        tmp_path,
        RunContext(progress=False),
        nested=False,
        say=lambda m: None,
        executor=executor,
    )
    assert executor.jobs[0].target == tmp_path and _status(tmp_path) == {"fan": "trained"}
