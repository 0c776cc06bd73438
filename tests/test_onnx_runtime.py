"""The torch-free ONNX runtime: its numpy front ends equal torch's, the in-graph front ends equal
the numpy ones, it imports and runs with torch blocked, and it refuses bad input clearly."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from stethoscope.data.layouts import scan
from stethoscope.encoders.efficientat import EfficientATMel, resample_16k_to_32k
from stethoscope.engine import RunContext
from stethoscope.export import export_onnx
from stethoscope.export.frontends import dcase_frontend, efficientat_frontend
from stethoscope.features.logmel import LogMel, LogMelParams
from stethoscope.onnx_runtime import (
    EdgeError,
    EdgeModel,
    dcase_logmel,
    efficientat_mel,
    resample_2x,
)
from stethoscope.systems import get_system

from .conftest import write_wav

SRC = Path(__file__).resolve().parents[1] / "src"
BLOCK_TORCH = "import sys; sys.modules['torch'] = None; "


def _waves(n: int = 2, samples: int = 40_000) -> np.ndarray:
    """Noise with a level ramp (quiet and loud frames) and a tone: float32 (n, samples)."""
    rng = np.random.default_rng(3)
    t = np.arange(samples) / 16_000
    ramp = np.linspace(0.01, 1.0, samples)
    return np.stack(
        [
            (
                0.1 * rng.standard_normal(samples) * ramp
                + 0.05 * np.sin(2 * np.pi * 440 * (k + 1) * t)
            )
            for k in range(n)
        ]
    ).astype(np.float32)


@pytest.mark.parametrize("params", [LogMelParams(), LogMelParams(n_mels=64, log_floor="add")])
def test_numpy_logmel_equals_torch(params: LogMelParams) -> None:
    fe = dcase_frontend(params)
    waves = _waves()
    expected = LogMel(params)(torch.from_numpy(waves)).numpy()
    got = np.stack([dcase_logmel(w, fe.params, fe.arrays) for w in waves])
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(
        got, expected, rtol=0, atol=1e-4
    )  # dB; measured max 1e-5 (torch's float32 FFT)


def test_resampling_is_scipys_bit_for_bit() -> None:
    taps = efficientat_frontend().arrays["resample_filter"]
    for n in (1, 2, 41, 12_345):
        wave = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        np.testing.assert_array_equal(
            resample_2x(wave, taps), scipy.signal.resample_poly(wave, 2, 1)
        )


def test_numpy_efficientat_mel_equals_torch() -> None:
    fe = efficientat_frontend()
    for wave in _waves():
        expected = EfficientATMel()(torch.from_numpy(resample_16k_to_32k(wave))[None])[0].numpy()
        got = efficientat_mel(wave, fe.params, fe.arrays)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)  # measured max 2e-5


def test_graph_frontends_equal_numpy() -> None:
    """The in-graph front ends (STFT op) give the numpy runtime's features."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from stethoscope.export.frontends import add_to_graph

    fes = [dcase_frontend(LogMelParams()), efficientat_frontend()]
    names = [fe.input for fe in fes]
    graph = helper.make_graph(
        [helper.make_node("Identity", [n], [f"{n}_out"]) for n in names],
        "identity",
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", 128, f"t{k}"])
            for k, n in enumerate(names)
        ],
        [
            helper.make_tensor_value_info(f"{n}_out", TensorProto.FLOAT, ["b", 128, f"t{k}"])
            for k, n in enumerate(names)
        ],
    )
    model = add_to_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), fes)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    waves = _waves()
    logmel, mn04 = session.run(None, {"waveform": waves})
    for k, wave in enumerate(waves):
        np.testing.assert_allclose(
            logmel[k], dcase_logmel(wave, fes[0].params, fes[0].arrays), rtol=0, atol=1e-4
        )
        np.testing.assert_allclose(
            mn04[k], efficientat_mel(wave, fes[1].params, fes[1].arrays), rtol=0, atol=1e-5
        )


@pytest.fixture(scope="module")
def exported(toy_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, list]:
    """A tiny dcase_ae, its torch system and test clips, exported with the front end outside."""
    clips = scan(toy_root)
    machine = sorted({c.machine for c in clips})[0]
    mine = [c for c in clips if c.machine == machine]
    train, test = (
        [c for c in mine if c.split == "train"][:6],
        [c for c in mine if c.split == "test"][:3],
    )
    system = get_system("dcase_ae", epochs=1, batch_size=64).fit(
        train, ctx=RunContext(seed=2, progress=False)
    )
    root = tmp_path_factory.mktemp("onnx-runtime")
    system.save(root / "model")
    export_onnx(root / "model", root / "export")
    return root / "export", system, test


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    return env


def test_runtime_imports_and_scores_without_torch(exported: tuple) -> None:
    folder, system, test = exported
    code = (
        BLOCK_TORCH + "import runpy; sys.argv = ['onnx_runtime', *sys.argv[1:]]; "
        "runpy.run_module('stethoscope.onnx_runtime', run_name='__main__')"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(folder), *(str(c.path) for c in test)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert "dcase_ae" in lines[0] and len(lines) == 1 + len(test)
    printed = np.array([float(line.split()[-2]) for line in lines[1:]])
    np.testing.assert_allclose(
        printed, system.score(test, RunContext(progress=False)), rtol=1e-5, atol=1e-9
    )
    blocked = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_TORCH + "import "
            "stethoscope.onnx_runtime, "
            "stethoscope; "
            "assert 'stethoscope.systems' not in sys.modules",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert blocked.returncode == 0, blocked.stderr


def test_other_sample_rates_are_resampled_like_torch(exported: tuple) -> None:
    folder, system, _ = exported
    # 3 s at 44.1 kHz (not 8 kHz: up-sampled audio leaves 4-8 kHz empty, and there torch's
    # float32 FFT gives rounding noise in dB, which the runtime's float64 FFT does not copy)
    wave = _waves(1, 132_300)[0]
    edge = EdgeModel(folder).score_waveform(wave, 44_100)
    expected = system.score_waveforms([wave], 44_100)[0]
    assert edge.score == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert edge.decision == int(expected > system.threshold_)
    assert edge.anomaly_map.shape == (128, 1 + 48_000 // 512) and edge.frame_error.shape == (
        1 + 48_000 // 512,
    )


def test_runtime_refuses_bad_input(exported: tuple, tmp_path: Path) -> None:
    folder, _, _ = exported
    model = EdgeModel(folder)
    with pytest.raises(EdgeError, match="NaN or infinite"):
        model.score_waveform(np.full(16_000, np.nan, np.float32))
    with pytest.raises(
        EdgeError,
        match=r"expected mono samples \(one dimension\), got shape \(2, "
        r"16000\)",
    ):
        model.score_waveform(np.zeros((2, 16_000), np.float32))
    with pytest.raises(EdgeError, match="shorter than the 2048"):
        model.score_waveform(np.zeros(1_000, np.float32))
    with pytest.raises(EdgeError, match="channel 1 requested"):
        model.score_file(write_wav(tmp_path / "mono.wav", _waves(1)[0]), channel=1)
    (tmp_path / "junk.wav").write_bytes(b"not audio")
    with pytest.raises(EdgeError, match=re.escape("junk.wav: not a readable audio file")):
        model.score_file(tmp_path / "junk.wav")
    with pytest.raises(EdgeError, match="not an ONNX export folder"):
        EdgeModel(tmp_path)
    res = subprocess.run(
        [sys.executable, "-m", "stethoscope.onnx_runtime", str(tmp_path), "x.wav"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        res.returncode == 2
        and "not an ONNX export folder" in res.stderr
        and "Traceback" not in res.stderr
    )
