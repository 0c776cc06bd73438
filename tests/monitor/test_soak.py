"""A short fault soak (`benchmarks/fault_soak.py`, whose 10-minute run is in docs/RESULTS.md 13):
``serve`` and ``watch`` on one database while good, poison, bomb, truncated, garbage, symlinked
and growing files arrive and clients post clips, both killed with ``-9`` every few seconds.
Nothing acknowledged is lost, every file ends scored or skipped as its kind demands, and
neither process ever exits by itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _fault_soak():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its neighbours (bench_serve, _common)
    spec = importlib.util.spec_from_file_location("fault_soak", BENCHMARKS / "fault_soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kill_9_soak_loses_nothing_and_never_crashes(models_dir: Path, tmp_path: Path) -> None:
    soak = _fault_soak()
    result = soak.Soak(tmp_path, models_dir, seconds=40, kill_every=5, seed=3).run()
    summary = soak.report(result, 40 / 60)
    assert result["drained"], summary
    assert sum(result["kills"].values()) >= 2, summary
    assert result["acknowledged"] > 0 and result["acknowledged_lost"] == 0, summary
    assert result["files_unmarked"] == 0 and result["wrong_outcomes"] == [], summary
    assert result["crashes"] == {"serve": 0, "watch": 0}, result["crash_tails"]
    assert result["poison_stored"] == result["non_finite_stored"] == result["dangling_marks"] == 0
    kinds = {k for k, counts in result["files"].items() if sum(counts.values())}
    assert {"good", "poison"} <= kinds, result["files"]  # 80 drops: every common kind arrived
