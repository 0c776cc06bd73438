"""``stethoscope export --format onnx``: tiny models of every exportable system, exported with the
front end outside and inside the graph; the ONNX runtime's scores, decisions and anomaly maps
equal the torch path's (`System.score`, `System.explain`). Errors exit 2 with a clear message.

Tolerance: rtol 1e-4, atol 1e-5 on scores. Measured on these models: frame-reconstruction
systems and LDGAN <= 3e-7 relative; embedding systems <= 6e-5 (float32 noise of torch's
own STFT in the near-empty 8-16 kHz band of EfficientAT's input, which the encoder carries on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from stethoscope.cli import main
from stethoscope.config import load_config
from stethoscope.data.layouts import scan
from stethoscope.engine import RunContext
from stethoscope.export import export_onnx, exportable_systems
from stethoscope.onnx_runtime import EdgeError, EdgeModel
from stethoscope.systems import base, get_system, load_system
from stethoscope.systems.threshold import THRESHOLD_PARAMS

RTOL, ATOL = 1e-4, 1e-5
CTX = RunContext(seed=5, progress=False)
LDGAN = {**load_config("ldgan", "ldgan_cpu"), "epochs": 1, "n_frames": 32}
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "ae_mahala": ("dcase_ae", {"epochs": 2, "batch_size": 64, "score_mode": "mahala"}),
    "vae_mse": ("gamma_vae", {"epochs": 2, "batch_size": 64}),
    "vae_mahala": ("gamma_vae", {"epochs": 2, "batch_size": 64, "score_mode": "mahala"}),
    "knn": ("embedding_knn", {"encoder": "random"}),
    "ldgan": ("ldgan", LDGAN),
    "tldiffgan": (
        "tldiffgan",
        {
            "ldgan": {k: v for k, v in LDGAN.items() if k not in THRESHOLD_PARAMS},
            "encoder": "random",
            "detectors": ["knn", "gmm"],
        },
    ),
    "mel_stats": ("mel_stats", {"modulation_bands": 4}),
}


@pytest.fixture(scope="module")
def clips(toy_root: Path) -> tuple[list, list]:
    mine = [c for c in scan(toy_root) if c.machine == "fan"]
    return [c for c in mine if c.split == "train"][:6], [c for c in mine if c.split == "test"][:4]


class Fitted:
    """Each model of `MODELS` fitted and saved once per module, on first use."""

    def __init__(self, root: Path, clips: tuple[list, list]) -> None:
        self.root, self.clips, self.dirs = root, clips, {}

    def __getitem__(self, key: str) -> Path:
        if key not in self.dirs:
            name, params = MODELS[key]
            self.dirs[key] = (
                get_system(name, **params).fit(self.clips[0], ctx=CTX).save(self.root / key)
            )
        return self.dirs[key]


@pytest.fixture(scope="module")
def fitted(clips: tuple[list, list], tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    return Fitted(tmp_path_factory.mktemp("export-models"), clips)


def _assert_same(model_dir: Path, folder: Path, test: list) -> dict[str, Any]:
    """ONNX scores, decisions and maps equal the torch path's; the measured differences."""
    system = load_system(model_dir)
    expected = system.score(test, CTX)
    edge = EdgeModel(folder)
    results = [edge.score_file(c.path) for c in test]
    got = np.array([r.score for r in results])
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    assert [r.decision for r in results] == list(system.decide(expected))
    assert edge.threshold == system.threshold_
    if system.has_anomaly_map:
        explanation = system.explain(test[0], CTX)
        amap = results[0].anomaly_map
        np.testing.assert_allclose(
            amap, explanation.anomaly_map, rtol=1e-4, atol=1e-4 * explanation.anomaly_map.max()
        )
        assert results[0].frame_error.shape == (amap.shape[1],)
    else:
        assert results[0].anomaly_map is None
    meta = json.loads((folder / "export.json").read_text())
    assert meta["check"]["rel_diff"] <= 1e-4
    return meta


@pytest.mark.parametrize("frontend", ["outside", "inside"])
def test_cli_exports_dcase_ae(
    trained: Path, toy_root: Path, tmp_path: Path, frontend: str, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "export"
    assert (
        main(
            [
                "export",
                "--model",
                str(trained / "fan"),
                "--format",
                "onnx",
                "--out",
                str(out),
                "--frontend",
                frontend,
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        f"exported dcase_ae ({frontend} front end)" in captured.out
        and "check: torch" in captured.err
    )
    test = [c for c in scan(toy_root) if c.machine == "fan" and c.split == "test"][:4]
    meta = _assert_same(trained / "fan", out, test)
    assert meta["system"] == "dcase_ae" and meta["score_mode"] == "mse" and meta["opset"] >= 17
    assert meta["source_model"]["sha256"]["weights.safetensors"]
    npy = sorted(p.name for p in out.glob("*.npy"))
    if frontend == "outside":
        assert meta["inputs"] == [
            {"name": "logmel", "dtype": "float32", "shape": ["batch", 128, "frames"]}
        ]
        assert npy == ["logmel_mel_filterbank.npy", "logmel_window.npy"]
        assert meta["frontends"][0]["files"]["mel_filterbank"] == "logmel_mel_filterbank.npy"
    else:
        assert meta["inputs"] == [
            {"name": "waveform", "dtype": "float32", "shape": ["batch", "samples"]}
        ]
        assert npy == []
        assert any(
            n.op_type == "STFT" for n in __import__("onnx").load(str(out / "model.onnx")).graph.node
        )


@pytest.mark.parametrize(
    "key,frontend",
    [
        ("ae_mahala", "outside"),
        ("ae_mahala", "inside"),
        ("vae_mse", "outside"),
        ("vae_mse", "inside"),
        ("vae_mahala", "inside"),
        ("knn", "outside"),
        ("knn", "inside"),
        ("ldgan", "outside"),
        ("tldiffgan", "outside"),
        ("tldiffgan", "inside"),
        ("mel_stats", "outside"),
        ("mel_stats", "inside"),
    ],
)
def test_export_equals_torch(
    key: str, frontend: str, clips: tuple[list, list], fitted: Fitted, tmp_path: Path
) -> None:
    root = tmp_path
    model_dir = fitted[key]
    record = export_onnx(model_dir, root / "export", frontend=frontend, seconds=4.0)
    assert record["frontend"] == frontend and record["system"] == MODELS[key][0]
    _assert_same(model_dir, root / "export", clips[1])
    if key in (
        "ldgan",
        "tldiffgan",
        "mel_stats",
    ):  # one clip length only (noise or percentiles fixed per length)
        assert record["clip_samples"] == 64_000
        with pytest.raises(EdgeError, match="exactly 64000 samples"):
            EdgeModel(root / "export").score_waveform(np.zeros(32_000, np.float32))


def test_unsupported_configurations_exit_2(
    clips: tuple[list, list], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    system = get_system("gamma_vae", epochs=1, batch_size=64, score_latent="sample").fit(
        clips[0], ctx=CTX
    )
    system.save(tmp_path / "vae")
    assert (
        main(
            [
                "export",
                "--model",
                str(tmp_path / "vae"),
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "score_latent='sample'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


class _Constant(base.System):
    """A system without a scoring module (registered by the test only)."""

    name = "constant_for_export_test"

    def fit(self, train: Any, val: Any = None, ctx: Any = None) -> _Constant:
        self.threshold_ = 1.0
        return self

    def feature_request(self) -> Any:
        return base.FeatureRequest(wave=True)

    def score_decoded(self, decoded: Any, ctx: Any) -> np.ndarray:
        return np.zeros(len(decoded))

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"dummy": torch.zeros(1)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        del tensors


def test_unknown_system_and_missing_folder_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(base.REGISTRY, _Constant.name, _Constant)
    _Constant().fit([]).save(tmp_path / "constant")
    assert (
        main(
            [
                "export",
                "--model",
                str(tmp_path / "constant"),
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"system {_Constant.name!r} cannot be exported to ONNX: it has no scoring module" in err
    assert "Traceback" not in err
    assert _Constant.name not in exportable_systems()
    assert {name for name, _ in MODELS.values()} <= set(exportable_systems())
    assert (
        main(
            [
                "export",
                "--model",
                str(tmp_path / "absent"),
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )
    assert "absent: not a model directory" in capsys.readouterr().err


def test_bad_options_and_missing_packages_exit_2(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = [
        "export",
        "--model",
        str(trained / "fan"),
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "x"),
    ]
    assert main([*args, "--opset", "16"]) == 2
    assert "--opset must be >= 17" in capsys.readouterr().err
    assert main([*args, "--seconds", "-1"]) == 2
    assert "--seconds must be a positive number" in capsys.readouterr().err
    assert main([*args[:-1], str(trained / "fan")]) == 2  # never replaces the model folder itself
    assert "exists and is not an ONNX export folder" in capsys.readouterr().err
    assert (trained / "fan" / "weights.safetensors").is_file()
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    assert main(args) == 2
    assert (
        "ONNX export needs onnxruntime: pip install 'stethoscope[onnx]'" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main([*args[:4], "tflite", *args[5:]])
