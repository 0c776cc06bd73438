"""Frame reconstruction systems trained on a memory-mapped (spilled) training set learn the
same model as from RAM: the feature budget changes where frames live, never the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stethoscope.data import scan
from stethoscope.engine import RunContext
from stethoscope.features.spill import BUDGET_ENV
from stethoscope.systems import get_system

CTX = RunContext(progress=False)


@pytest.mark.parametrize("name", ["dcase_ae", "gamma_vae"])
def test_spilled_frames_train_the_same_model(
    name: str, toy_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = scan(toy_root, machine="fan")
    train, test = (
        [c for c in clips if c.split == "train"][:6],
        [c for c in clips if c.split == "test"][:4],
    )
    params = (
        {"epochs": 1, "batch_size": 256, "score_mode": "mahala"}
        if name == "dcase_ae"
        else {"epochs": 1, "batch_size": 256}
    )
    in_ram = get_system(name, **params).fit(train, ctx=CTX)
    monkeypatch.setenv(BUDGET_ENV, "0")
    spilled = get_system(name, **params).fit(train, ctx=CTX)
    np.testing.assert_array_equal(spilled.score(test, CTX), in_ram.score(test, CTX))
    assert spilled.threshold_ == in_ram.threshold_
