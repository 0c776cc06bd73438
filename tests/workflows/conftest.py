"""Fixtures of the workflow tests: mel_stats models (fitted in seconds) of the toy data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from stethoscope.engine import RunContext
from stethoscope.workflows.spec import system_spec
from stethoscope.workflows.train import train_folder

CTX = RunContext(progress=False, threads=1)


@pytest.fixture(scope="session")
def models(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models")
    spec = system_spec("mel_stats", overrides=["threshold_fit=in_sample"])
    systems = train_folder(toy_root, spec.build, out, CTX, say=lambda m: None)
    assert sorted(systems) == ["fan", "gearbox"]
    return out
