"""Feature arrays that stay in RAM while they fit a budget and spill to a memory-mapped file
otherwise.

A DCASE development set's log-mels (3,000-6,000 clips of 10 s: 0.5-1 GB per machine type)
fit in RAM on most machines, and then stay there (fastest). Past the budget
(``$STETHOSCOPE_FEATURE_RAM_GB``, default 2) they go into an unnamed temporary file mapped
into memory, which the kernel pages in and out as training reads it, so that a data set
larger than RAM still trains. The file has no name (it disappears with the array, even
after a crash) and lives in the feature cache folder when there is one, else in the
system's temporary folder (``$TMPDIR``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..utils import env_number

BUDGET_ENV = "STETHOSCOPE_FEATURE_RAM_GB"
DEFAULT_BUDGET_GB = 2.0


def ram_budget_bytes() -> int:
    """The largest feature array kept in RAM, from ``$STETHOSCOPE_FEATURE_RAM_GB`` (default 2)."""
    return int(env_number(BUDGET_ENV, DEFAULT_BUDGET_GB, unit=" GB") * 2**30)


def float32_array(rows: int, cols: int, spill_dir: str | Path | None = None) -> np.ndarray:
    """An uninitialised (rows, cols) float32 array: in RAM within the budget, otherwise a
    `numpy.memmap` over an unnamed temporary file in ``spill_dir`` (or the temporary folder)."""
    if rows * cols * 4 <= ram_budget_bytes():
        return np.empty((rows, cols), dtype=np.float32)
    folder = Path(spill_dir) if spill_dir is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder) as handle:  # the mapping keeps its own descriptor
        return np.memmap(handle, dtype=np.float32, mode="w+", shape=(rows, cols))
