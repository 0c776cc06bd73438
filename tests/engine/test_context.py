"""RunContext: validation, device-local generators, sub-folders per run, metadata."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stethoscope.engine import RunContext, available_cores
from stethoscope.engine.context import default_threads
from stethoscope.errors import ConfigError


@pytest.mark.parametrize(
    "bad", [{"device": "tpu"}, {"precision": "fp8"}, {"threads": 0}, {"checkpoint_every": 0}]
)
def test_bad_settings_are_clear_errors(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        RunContext(**bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_without_a_gpu_says_so() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        RunContext(device="cuda").check_device()


def test_generators_are_seeded_per_offset_and_live_on_the_device() -> None:
    ctx = RunContext(seed=7)
    a, b, c = ctx.generator(1), ctx.generator(1), ctx.generator(2)
    assert a.device == torch.device("cpu")
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    assert not torch.equal(torch.rand(3, generator=ctx.generator(1)), torch.rand(3, generator=c))


def test_for_run_gives_each_machine_and_fold_its_own_folder(tmp_path: Path) -> None:
    ctx = RunContext(checkpoint_dir=tmp_path)
    assert ctx.for_run("fan", "fold0").checkpoint_dir == tmp_path / "fan" / "fold0"
    assert RunContext().for_run("fan").checkpoint_dir is None


def test_threads_default_to_one_under_passive_wait_else_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what importing stethoscope sets
        assert default_threads() == 1 == RunContext().apply_threads() == torch.get_num_threads()
        monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's own choice
        assert RunContext().apply_threads() == available_cores() == torch.get_num_threads()
        if hasattr(os, "sched_getaffinity"):
            assert available_cores() == len(os.sched_getaffinity(0))
        assert RunContext(threads=1).apply_threads() == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_metadata_names_the_runtime_not_hyperparameters(tmp_path: Path) -> None:
    meta = RunContext(seed=3, cache_dir=tmp_path).metadata()
    assert meta["seed"] == 3 and meta["device"] == "cpu" and meta["cache_dir"] == str(tmp_path)
    assert meta["torch_threads"] == torch.get_num_threads()
