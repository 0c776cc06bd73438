"""Importing stethoscope sets OMP_WAIT_POLICY=PASSIVE before torch loads, unless the user set it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PRINT = "import stethoscope, os; print(os.environ['OMP_WAIT_POLICY'])"


def test_omp_wait_policy_passive_unless_set() -> None:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    base["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [base.get("PYTHONPATH")])])
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PRINT],
            env={**base, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in ({}, {"OMP_WAIT_POLICY": "ACTIVE"})
    ]  # at once: each spends its time importing torch
    (fresh, _), (explicit, _) = (p.communicate(timeout=120) for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert fresh.strip() == "PASSIVE"
    assert explicit.strip() == "ACTIVE"
