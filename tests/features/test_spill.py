"""Feature arrays: in RAM within the budget, memory-mapped unnamed files past it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stethoscope.errors import ConfigError
from stethoscope.features.spill import (
    BUDGET_ENV,
    DEFAULT_BUDGET_GB,
    float32_array,
    ram_budget_bytes,
)


def test_budget_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert ram_budget_bytes() == int(DEFAULT_BUDGET_GB * 2**30)
    monkeypatch.setenv(BUDGET_ENV, "0.5")
    assert ram_budget_bytes() == 2**29
    for bad in ("lots", "-1", "nan"):
        monkeypatch.setenv(BUDGET_ENV, bad)
        with pytest.raises(ConfigError, match=BUDGET_ENV):
            ram_budget_bytes()


def test_within_budget_in_ram_past_it_an_unnamed_mapped_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BUDGET_ENV, str(1000 / 2**30))  # 1,000 bytes: 250 floats
    small = float32_array(10, 25, tmp_path)
    assert type(small) is np.ndarray and small.shape == (10, 25)
    big = float32_array(10, 26, tmp_path / "spill")
    assert isinstance(big, np.memmap) and big.shape == (10, 26) and big.dtype == np.float32
    big[:] = np.arange(260, dtype=np.float32).reshape(10, 26)
    assert float(big[9, 25]) == 259.0 and float(big.sum()) == float(np.arange(260).sum())
    assert (tmp_path / "spill").is_dir() and list(
        (tmp_path / "spill").iterdir()
    ) == []  # unnamed: nothing left
