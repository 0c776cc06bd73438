"""What the Ray tests share: one local Ray (2 CPUs, no dashboard, quiet) per test module, a tiny
two-type toy set and dcase_ae models trained on it in this process."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from stethoscope.cli import main

ray = pytest.importorskip(
    "ray", reason="Ray is the optional extra stethoscope[ray] (CI installs it with .[dev])"
)

# one epoch, a small batch and an in-sample threshold: the tests check plumbing, not detection
TINY = [
    "--set",
    "epochs=1",
    "batch_size=64",
    "threshold_fit=in_sample",
    "--threads",
    "1",
    "--quiet",
    "--no-cache",
]


@pytest.fixture(scope="module")
def ray_local() -> Iterator[ModuleType]:
    """A local Ray with 2 CPUs for the module's tests, shut down at its end. Ray's agents get 5
    minutes to start (default 30 s): on a machine shared by many jobs the raylet otherwise
    aborts waiting for them."""
    os.environ.setdefault("RAY_agent_register_timeout_ms", "300000")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def fleet_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two toy machine types (fan, gearbox), 4 training and 4 test clips of 2 s each."""
    from stethoscope.data.toy_factory import make_toy_dataset

    return make_toy_dataset(
        tmp_path_factory.mktemp("fleet"), n_train=4, n_test=4, seconds=2.0, seed=0
    )


@pytest.fixture(scope="session")
def fleet_models(fleet_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dcase_ae per type, trained by the local engine: OUT/fan and OUT/gearbox (read-only)."""
    out = tmp_path_factory.mktemp("fleet-models")
    assert (
        main(["train", "--data", str(fleet_data), "--system", "dcase_ae", "--out", str(out), *TINY])
        == 0
    )
    return out
