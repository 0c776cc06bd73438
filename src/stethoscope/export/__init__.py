"""ONNX export of a trained model's scoring network (``stethoscope export --format onnx``).

The network is exported with torch's dynamo-based exporter (``torch.onnx.export(...,
dynamo=True)``, the default of torch 2.9+; the TorchScript exporter is deprecated), opset 18.
The audio front end stays in numpy (``outside``: `stethoscope.onnx_runtime` computes it from the
saved filter bank and window) or goes into the graph (``inside``: ONNX ``STFT`` nodes, see
`frontends`). Every export is checked before it is installed: a seeded noise clip is scored by
the torch system and by the ONNX runtime, and a relative difference above `CHECK_RTOL` fails it.

Supported: ``dcase_ae`` and ``gamma_vae`` (MSE and MAHALA; GammaVAE with ``score_latent:
mean``), ``embedding_knn`` (EfficientAT mn04 encoders; any detector, GMM with diagonal
covariances), ``ldgan`` and ``tldiffgan`` (for one clip length, ``--seconds``: their scoring
noise is fixed per length), ``mel_stats`` (its own scoring module, `MelStatsScorer`, for one clip
length: its percentiles index frames; every section's detectors, the smallest score, as an
in-memory waveform is scored).
"""
from __future__ import annotations

import hashlib
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, StethoscopeError

SUPPORTED = ("dcase_ae", "gamma_vae", "embedding_knn", "ldgan", "tldiffgan", "mel_stats")
FIXED_LENGTH = ("ldgan", "tldiffgan", "mel_stats")
OPSET = 18
CHECK_RTOL = 1e-3
SAMPLE_RATE = 16_000
FRONTEND_MODES = ("outside", "inside")


def require_onnx() -> None:
    """A clear error when the optional ONNX packages are missing."""
    missing = []
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise StethoscopeError(f"ONNX export needs {', '.join(missing)}: pip install 'stethoscope[onnx]' "
                               f"(or pip install onnx onnxruntime onnxscript)")


@dataclass
class _Plan:
    """What to export for one system: the torch head, example inputs, dynamic axes, front ends."""

    head: Any
    inputs: dict[str, Any]
    dynamic: dict[str, dict[int, Any]]
    frontends: list[Any]
    outputs: list[str]
    clip_samples: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _plan(system: Any, seconds: float | None) -> _Plan:
    """The export plan of a loaded system (ConfigError for what cannot be exported)."""
    import torch

    from ..engine import RunContext
    from .frontends import dcase_frontend, efficientat_frontend
    from .heads import EmbeddingHead, FrameReconHead, LDGANHead, TLDiffGANHead

    batch = torch.export.Dim("batch")
    name = system.name
    if name not in SUPPORTED:
        raise ConfigError(f"system {name!r} cannot be exported to ONNX; supported: {', '.join(SUPPORTED)}")
    if name in ("dcase_ae", "gamma_vae"):
        if getattr(system, "score_latent", "mean") != "mean":
            raise ConfigError(f"{name} with score_latent={system.score_latent!r} scores a random latent sample; "
                              f"ONNX export needs score_latent=mean")
        frames = torch.export.Dim("frames", min=system.n_frames)
        example = torch.randn(2, system.n_mels, system.n_frames + 11)
        details = {"score_mode": system.score_mode, "n_frames": system.n_frames}
        return _Plan(FrameReconHead(system), {"logmel": example}, {"logmel": {0: batch, 2: frames}},
                     [dcase_frontend(system.logmel_params)], ["score", "anomaly_map"], details=details)
    if name == "embedding_knn":
        encoder = system._get_encoder(RunContext())
        frames = torch.export.Dim("frames", min=32)
        details = {"detector": system.detector, "encoder": system.encoder, "encoder_weights": encoder.weights}
        return _Plan(EmbeddingHead(system, encoder), {"mn04_mel": torch.randn(2, 128, 101)},
                     {"mn04_mel": {0: batch, 2: frames}}, [efficientat_frontend()], ["score"], details=details)
    samples = round((10.0 if seconds is None else seconds) * SAMPLE_RATE)
    if name == "mel_stats":
        mel_frames = system.logmel_params.n_frames(samples)
        details = {"detector": system.detector, "stats": system.stats, "groups": system.groups_}
        return _Plan(system.scorer_, {"logmel": torch.randn(2, system.n_mels, mel_frames)}, {"logmel": {0: batch}},
                     [dcase_frontend(system.logmel_params)], ["score", "anomaly_map"], samples, details)
    if name == "tldiffgan" and system.mel_stats_branch:
        raise ConfigError("tldiffgan with mel_stats_branch=true cannot be exported to ONNX yet (its export head "
                          "fuses the mel and waveform branches only)")
    params = system.branch.logmel_params
    mel_frames = params.n_frames(samples)
    if name == "ldgan":
        head = LDGANHead(system.branch, mel_frames, embedding=False)
        details = {"score_reduction": system.score_reduction, "score_step": system.score_step}
        return _Plan(head, {"logmel": torch.randn(2, params.n_mels, mel_frames)}, {"logmel": {0: batch}},
                     [dcase_frontend(params)], ["score", "anomaly_map"], samples, details)
    encoder = system._get_encoder(RunContext()) if system.use_wave_branch else None
    head = TLDiffGANHead(system, mel_frames, encoder)
    inputs, frontends = {"logmel": torch.randn(2, params.n_mels, mel_frames)}, [dcase_frontend(params)]
    if encoder is not None:
        fe = efficientat_frontend()
        inputs["mn04_mel"] = torch.randn(2, 128, 1 + (2 * samples - 1) // fe.params["hop_length"])
        frontends.append(fe)
    details = {"selection": system.selection_["chosen"], "candidates": head.names}
    return _Plan(head, inputs, {k: {0: batch} for k in inputs}, frontends, ["score", "anomaly_map"], samples,
                 details)


def _export_graph(plan: _Plan, opset: int) -> Any:
    """The head as an ONNX model (dynamo exporter, quiet)."""
    import torch

    quiet = {n: logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")}
    levels = {n: q.level for n, q in quiet.items()}
    try:
        for q in quiet.values():
            q.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(plan.head.eval(), tuple(plan.inputs.values()), dynamo=True, verbose=False,
                                        opset_version=opset, input_names=list(plan.inputs),
                                        output_names=plan.outputs, dynamic_shapes=plan.dynamic, report=False)
    except Exception as err:  # the exporter raises many types; name the cause
        raise StethoscopeError(f"ONNX export failed ({type(err).__name__}: {str(err).splitlines()[0]})") from err
    finally:
        for n, q in quiet.items():
            q.setLevel(levels[n])
    return program.model_proto


def _shape(value_info: Any) -> list[Any]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_clip(samples: int) -> np.ndarray:
    """A seeded noise clip with a slow level sweep (the export check's input)."""
    rng = np.random.default_rng(0)
    sweep = np.linspace(0.2, 1.0, samples)
    return (0.05 * rng.standard_normal(samples) * sweep).astype(np.float32)


def export_onnx(model_dir: str | Path, out: str | Path, frontend: str = "outside", seconds: float | None = None,
                opset: int = OPSET) -> dict[str, Any]:
    """Export the model in ``model_dir`` to the folder ``out`` (written atomically); returns
    the export.json record. ``seconds``: clip length of LDGAN/TLDiffGAN exports (default 10).
    An existing ``out`` is replaced only when it is an earlier export (or empty)."""
    import onnx
    import torch

    from .. import __version__
    from ..onnx_runtime import FORMAT, FORMAT_VERSION, EdgeModel
    from ..systems.base import CONFIG_FILE, WEIGHTS_FILE, load_system
    from ..fsutil import atomic_directory, atomic_write_bytes, atomic_write_json
    from .frontends import add_to_graph

    require_onnx()
    if frontend not in FRONTEND_MODES:
        raise ConfigError(f"--frontend must be one of {', '.join(FRONTEND_MODES)}, got {frontend!r}")
    if opset < 17:
        raise ConfigError(f"--opset must be >= 17 (the STFT operator), got {opset}")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--seconds must be a positive number, got {seconds}")
    model_dir, out = Path(model_dir), Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "export.json").is_file())):
        raise ConfigError(f"--out {out}: exists and is not an ONNX export folder; give a new or empty folder")
    system = load_system(model_dir)
    if system.threshold_ is None:
        raise ConfigError(f"{model_dir}: the model has no decision threshold")
    if system.score_norm_:
        raise ConfigError(f"{model_dir}: models with score_norm={system.score_norm!r} cannot be exported to ONNX yet "
                          "(the edge runtime does not apply per-section statistics)")
    plan = _plan(system, seconds)
    model = _export_graph(plan, opset)
    if frontend == "inside":
        model = add_to_graph(model, plan.frontends)
    min_samples = math.ceil(system.feature_request().min_seconds * SAMPLE_RATE)
    record: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "system": system.name, **plan.details,
        "threshold": float(system.threshold_), "frontend": frontend, "sample_rate": SAMPLE_RATE,
        "min_samples": plan.clip_samples or min_samples, "clip_samples": plan.clip_samples,
        "inputs": [{"name": i.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name,
                    "shape": _shape(i)} for i in model.graph.input],
        "outputs": [{"name": o.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type).name,
                     "shape": _shape(o)} for o in model.graph.output],
        "opset": opset, "exporter": f"torch.onnx dynamo (torch {torch.__version__}, onnx {onnx.__version__})",
        "stethoscope_version": __version__,
        "source_model": {"path": str(model_dir.resolve()), "system": system.name,
                         "sha256": {f: _sha256(model_dir / f) for f in (CONFIG_FILE, WEIGHTS_FILE)}},
        "frontends": [],
    }
    with atomic_directory(out) as tmp:
        atomic_write_bytes(tmp / "model.onnx", model.SerializeToString())
        for fe in plan.frontends:
            files = {}
            if frontend == "outside":
                for key, array in fe.arrays.items():
                    files[key] = f"{fe.input}_{key}.npy"
                    np.save(tmp / files[key], array, allow_pickle=False)
            record["frontends"].append(fe.record(files))
        atomic_write_json(tmp / "export.json", record)
        record["check"] = _verify(system, EdgeModel(tmp), plan.clip_samples or 4 * SAMPLE_RATE)
        atomic_write_json(tmp / "export.json", record)
    return record


def _verify(system: Any, edge: Any, samples: int) -> dict[str, Any]:
    """Score the check clip with torch and with ONNX; fail the export when they differ."""
    wave = _check_clip(samples)
    expected = float(system.score_waveforms([wave])[0])
    got = edge.score_waveform(wave).score
    diff = abs(got - expected)
    rel = diff / max(abs(expected), 1e-12)
    if not rel <= CHECK_RTOL:
        raise StethoscopeError(f"ONNX export check failed: torch scores the check clip {expected:.9g}, "
                               f"ONNX {got:.9g} (relative difference {rel:.3g} > {CHECK_RTOL})")
    return {"clip": f"seeded noise, {samples} samples", "torch_score": expected, "onnx_score": got,
            "abs_diff": diff, "rel_diff": rel}
