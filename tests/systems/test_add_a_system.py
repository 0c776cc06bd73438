"""CONTRIBUTING.md's "Add a system" promise: a new system needs its own module (with
``@register``), optionally a packaged config, and one import line in `systems/__init__.py`;
nothing else. A throwaway system, written to a module outside the package and imported (the
registry line's effect), runs the whole contract test with nothing added anywhere else."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.systems.test_every_system as contract
from stethoscope.config import load_config
from stethoscope.data.layouts import scan
from stethoscope.systems import list_systems
from stethoscope.systems.base import REGISTRY

NAME = "loudness_probe"
MODULE = '''
"""A throwaway system: a clip's score is how far its RMS level is from the training mean."""
import numpy as np
import torch

from stethoscope.features.extract import FeatureRequest
from stethoscope.systems.base import System, register


@register
class LoudnessProbe(System):
    name = "loudness_probe"
    description = "distance of a clip's RMS level from the training mean (a test system)"

    def __init__(self, *, scale: float = 1.0) -> None:
        self._set_params(locals())
        self.mean_ = 0.0

    def feature_request(self) -> FeatureRequest:
        return FeatureRequest(wave=True)

    def _rms(self, decoded) -> np.ndarray:
        return np.array([np.sqrt(np.mean(np.square(w, dtype=np.float64))) for w in decoded.waves])

    def fit(self, train, val=None, ctx=None):
        ctx = self._begin_fit(train, ctx)
        self.mean_ = float(np.mean(self.score(train, ctx)))  # with mean_ = 0: the RMS levels
        self.fit_threshold(self.score(train, ctx), train, ctx)
        return self

    def score_decoded(self, decoded, ctx) -> np.ndarray:
        return self.scale * np.abs(self._rms(decoded) - self.mean_)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": torch.tensor([self.mean_], dtype=torch.float64)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_ = float(tensors["mean"][0])
'''


@pytest.fixture
def new_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The throwaway system's module, imported as `systems/__init__.py` imports a system's."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / f"{NAME}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    assert NAME not in list_systems()
    importlib.import_module(NAME)
    yield NAME
    REGISTRY.pop(NAME, None)
    sys.modules.pop(NAME, None)


def test_a_registered_system_runs_the_whole_contract(
    new_system: str, toy_root: Path, tmp_path: Path
) -> None:
    assert new_system in list_systems()
    assert load_config(new_system) == {}  # no packaged config: the constructor's defaults
    assert contract.smoke(new_system) == {}  # no smoke_params: the contract runs the defaults
    machine = sorted({c.machine for c in scan(toy_root)})[0]
    mine = [c for c in scan(toy_root) if c.machine == machine]
    clips = [c for c in mine if c.split == "train"][:6], [c for c in mine if c.split == "test"][:4]
    contract.test_system_end_to_end(new_system, "cpu", clips, tmp_path / "contract")
