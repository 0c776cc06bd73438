"""Every registered system, end to end on tiny generated data, on every available device:
fit, score, same-seed repeatability, save/load, in-memory waveforms, explain, and (on the CPU)
ONNX export: the system exports and the ONNX runtime's scores equal torch's, or it refuses
with its own one-line reason."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from stethoscope.data.layouts import scan
from stethoscope.engine import RunContext
from stethoscope.errors import ConfigError
from stethoscope.features.extract import FeatureRequest, iter_decoded
from stethoscope.systems import REGISTRY, get_system, list_systems, load_system

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def smoke(name: str) -> dict[str, Any]:
    """The system's own smallest end-to-end hyperparameters (`System.smoke_params`, a copy: the
    system may keep what it is given); a system without them runs with its defaults."""
    return copy.deepcopy(REGISTRY[name].smoke_params)


@pytest.fixture(scope="module")
def clips(toy_root: Path) -> tuple[list, list]:
    machine = sorted({c.machine for c in scan(toy_root)})[0]
    mine = [c for c in scan(toy_root) if c.machine == machine]
    return [c for c in mine if c.split == "train"][:6], [c for c in mine if c.split == "test"][:4]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(list_systems()))
def test_system_end_to_end(
    name: str, device: str, clips: tuple[list, list], tmp_path: Path
) -> None:
    train, test = clips
    ctx = RunContext(device=device, seed=11, progress=False)
    first = get_system(name, **smoke(name)).fit(train, ctx=ctx)
    again = get_system(name, **smoke(name)).fit(train, ctx=ctx)
    scores = first.score(test, ctx)
    assert scores.shape == (len(test),) and np.isfinite(scores).all()
    np.testing.assert_allclose(
        again.score(test, ctx), scores, rtol=1e-6, atol=1e-9
    )  # same seed, same model
    assert first.threshold_ is not None and np.isfinite(first.threshold_)

    first.save(tmp_path / "model")
    loaded = load_system(tmp_path / "model")
    np.testing.assert_allclose(loaded.score(test, ctx), scores, rtol=1e-6, atol=1e-9)

    decoded = next(iter_decoded(test[:2], FeatureRequest(wave=True), progress=False))
    from_memory = loaded.score_waveforms(decoded.waves, 16_000, ctx)  # no files, no cache
    np.testing.assert_allclose(from_memory, scores[:2], rtol=1e-5, atol=1e-7)

    if loaded.has_anomaly_map:
        ex = loaded.explain(test[0], ctx)
        assert ex.score == pytest.approx(scores[0], rel=1e-5, abs=1e-9)
        assert ex.anomaly_map.shape == ex.logmel.shape and np.isfinite(ex.anomaly_map).all()
    if device == "cpu":
        _exports_or_refuses(loaded, tmp_path / "model", test, ctx, tmp_path / "onnx")


def _exports_or_refuses(
    system: Any, model_dir: Path, test: list, ctx: RunContext, out: Path
) -> None:
    """ONNX scores of the test clips equal torch's within 1e-4 (rel, with an abs floor), or the
    export refuses with the system's own one-line reason. Torch scores the clips as in-memory
    waveforms, as the edge runtime does (no section or domain known)."""
    reason = system.export_refusal()
    if reason:
        assert "\n" not in reason and system.name in reason
        with pytest.raises(ConfigError, match=re.escape(reason)):
            system.export_plan()
    pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra")
    pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra")
    from stethoscope.export import export_onnx
    from stethoscope.onnx_runtime import EdgeModel

    if reason:
        with pytest.raises(ConfigError, match=re.escape(reason)):
            export_onnx(model_dir, out)
        assert not out.exists()
        return
    decoded = iter_decoded(test, FeatureRequest(wave=True), progress=False)
    waves = [w for d in decoded for w in d.waves]
    record = export_onnx(model_dir, out, seconds=len(waves[0]) / 16_000)  # fixed-length systems
    assert record["system"] == system.name
    scores = system.score_waveforms(waves, 16_000, ctx)
    edge = EdgeModel(out)
    got = np.array([edge.score_waveform(w).score for w in waves])
    floor = 1e-4 * max(1e-3, float(np.abs(scores).max()))
    np.testing.assert_allclose(got, scores, rtol=1e-4, atol=floor)
