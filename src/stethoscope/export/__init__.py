"""ONNX export of a trained model's scoring network (``stethoscope export --format onnx``).

The network is the system's own scoring module, the one its ``score`` and ``explain`` run:
`System.export_plan` gives it with example inputs, dynamic axes, the front end of each input
and what export.json records (`systems.export_plan.ExportPlan`); a system that cannot be
exported says why in one line (`System.export_refusal`, raised here as `ConfigError`). Nothing
here knows a system by name (`exportable_systems` reads the classes).

The module is exported with torch's dynamo-based exporter (``torch.onnx.export(...,
dynamo=True)``, the default of torch 2.9+; the TorchScript exporter is deprecated), opset 18.
The audio front end stays in numpy (``outside``: `stethoscope.onnx_runtime` computes it from the
saved filter bank and window) or goes into the graph (``inside``: ONNX ``STFT`` nodes, see
`frontends`). Every export is checked before it is installed: a seeded noise clip is scored by
the torch system and by the ONNX runtime, and a relative difference above `CHECK_RTOL` fails it.
Systems whose scoring noise or percentiles are fixed per clip length (ldgan, tldiffgan,
mel_stats) are exported for one length (``seconds``, default 10).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine import RunContext
from ..errors import ConfigError, StethoscopeError

if TYPE_CHECKING:
    from ..systems.export_plan import ExportPlan

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
        raise StethoscopeError(
            f"ONNX export needs {', '.join(missing)}: pip install 'stethoscope[onnx]' "
            f"(or pip install onnx onnxruntime onnxscript)"
        )


def exportable_systems() -> list[str]:
    """The registered systems that have an ONNX export (``no_export`` is None on their class);
    a fitted one may still refuse for its hyperparameters (`System.export_refusal`)."""
    from ..systems import list_systems

    return [name for name, cls in list_systems().items() if cls.no_export is None]


def _plan(
    system: Any, seconds: float | None, ctx: RunContext | None
) -> tuple[ExportPlan, list[Any]]:
    """The system's export plan (ConfigError with its own reason where it has none) and its
    front ends."""
    from ..systems.export_plan import EFFICIENTAT_MEL
    from .frontends import dcase_frontend, efficientat_frontend

    system.refuse_export()
    plan = system.export_plan(seconds, ctx)
    fronts = [
        efficientat_frontend(name) if spec == EFFICIENTAT_MEL else dcase_frontend(spec, name)
        for name, spec in plan.frontends.items()
    ]
    return plan, fronts


def _export_graph(plan: ExportPlan, opset: int) -> Any:
    """The plan's scoring module (a frozen CPU copy) as an ONNX model (dynamo exporter, quiet)."""
    import torch

    module = copy.deepcopy(plan.module).cpu().eval()

    quiet = {
        n: logging.getLogger(n)
        for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")
    }
    levels = {n: q.level for n, q in quiet.items()}
    try:
        for q in quiet.values():
            q.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                tuple(plan.inputs.values()),
                dynamo=True,
                verbose=False,
                opset_version=opset,
                input_names=list(plan.inputs),
                output_names=plan.outputs,
                dynamic_shapes=plan.dynamic,
                report=False,
            )
    except Exception as err:  # the exporter raises many types; name the cause
        raise StethoscopeError(
            f"ONNX export failed ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err
    finally:
        for n, q in quiet.items():
            q.setLevel(levels[n])
    assert program is not None  # dynamo=True always returns the program
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


def _check_args(out: Path, frontend: str, opset: int, seconds: float | None) -> None:
    """A `ConfigError` naming the flag that is out of range, or an ``out`` that is not an
    earlier export (or empty)."""
    if frontend not in FRONTEND_MODES:
        raise ConfigError(
            f"--frontend must be one of {', '.join(FRONTEND_MODES)}, got {frontend!r}"
        )
    if opset < 17:
        raise ConfigError(f"--opset must be >= 17 (the STFT operator), got {opset}")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--seconds must be a positive number, got {seconds}")
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "export.json").is_file())
    ):
        raise ConfigError(
            f"--out {out}: exists and is not an ONNX export folder; give a new or empty folder"
        )


def _io_record(values: Any) -> list[dict[str, Any]]:
    """Name, numpy dtype and shape of each of a graph's inputs or outputs."""
    from onnx.helper import tensor_dtype_to_np_dtype

    return [
        {
            "name": v.name,
            "dtype": tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
            "shape": _shape(v),
        }
        for v in values
    ]


def export_onnx(
    model_dir: str | Path,
    out: str | Path,
    frontend: str = "outside",
    seconds: float | None = None,
    opset: int = OPSET,
    ctx: RunContext | None = None,
) -> dict[str, Any]:
    """Export the model in ``model_dir`` to the folder ``out`` (written atomically); returns
    the export.json record. ``seconds``: clip length of fixed-length exports (default 10);
    ``ctx``: the runtime (where pretrained encoder weights are found; default `RunContext()`).
    An existing ``out`` is replaced only when it is an earlier export (or empty)."""
    from ..fsutil import atomic_directory, atomic_write_bytes, atomic_write_json
    from ..onnx_runtime import EdgeModel
    from ..systems.base import load_system
    from .frontends import add_to_graph

    require_onnx()
    model_dir, out = Path(model_dir), Path(out)
    _check_args(out, frontend, opset, seconds)
    system = load_system(model_dir)
    if system.threshold_ is None:
        raise ConfigError(f"{model_dir}: the model has no decision threshold")
    ctx = ctx or RunContext(progress=False)
    plan, fronts = _plan(system, seconds, ctx)
    model = _export_graph(plan, opset)
    if frontend == "inside":
        model = add_to_graph(model, fronts)
    record = _record(system, plan, model, frontend, opset, model_dir)
    with atomic_directory(out) as tmp:
        atomic_write_bytes(tmp / "model.onnx", model.SerializeToString())
        for fe in fronts:
            files = {}
            if frontend == "outside":
                for key, array in fe.arrays.items():
                    files[key] = f"{fe.input}_{key}.npy"
                    np.save(tmp / files[key], array, allow_pickle=False)
            record["frontends"].append(fe.record(files))
        atomic_write_json(tmp / "export.json", record)
        record["check"] = _verify(system, EdgeModel(tmp), plan.clip_samples or 4 * SAMPLE_RATE, ctx)
        atomic_write_json(tmp / "export.json", record)
    return record


def _record(
    system: Any, plan: ExportPlan, model: Any, frontend: str, opset: int, model_dir: Path
) -> dict[str, Any]:
    """export.json's record of the exported ``model``, before its front ends' files and its
    check (`_verify`) are added."""
    import onnx
    import torch

    from .. import __version__
    from ..onnx_runtime import FORMAT, FORMAT_VERSION
    from ..systems.base import CONFIG_FILE, WEIGHTS_FILE

    min_samples = math.ceil(system.feature_request().min_seconds * SAMPLE_RATE)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "system": system.name,
        **plan.details,
        "threshold": float(system.threshold_),
        "frontend": frontend,
        "sample_rate": SAMPLE_RATE,
        "min_samples": plan.clip_samples or min_samples,
        "clip_samples": plan.clip_samples,
        "inputs": _io_record(model.graph.input),
        "outputs": _io_record(model.graph.output),
        "opset": opset,
        "exporter": f"torch.onnx dynamo (torch {torch.__version__}, onnx {onnx.__version__})",
        "stethoscope_version": __version__,
        "source_model": {
            "path": str(model_dir.resolve()),
            "system": system.name,
            "sha256": {f: _sha256(model_dir / f) for f in (CONFIG_FILE, WEIGHTS_FILE)},
        },
        "frontends": [],
    }


def _verify(system: Any, edge: Any, samples: int, ctx: RunContext) -> dict[str, Any]:
    """Score the check clip with torch and with ONNX; fail the export when they differ."""
    wave = _check_clip(samples)
    expected = float(system.score_waveforms([wave], ctx=ctx)[0])
    got = edge.score_waveform(wave).score
    diff = abs(got - expected)
    rel = diff / max(abs(expected), 1e-12)
    if not rel <= CHECK_RTOL:
        raise StethoscopeError(
            f"ONNX export check failed: torch scores the check clip {expected:.9g}, "
            f"ONNX {got:.9g} (relative difference {rel:.3g} > {CHECK_RTOL})"
        )
    return {
        "clip": f"seeded noise, {samples} samples",
        "torch_score": expected,
        "onnx_score": got,
        "abs_diff": diff,
        "rel_diff": rel,
    }
