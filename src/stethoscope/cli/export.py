"""``stethoscope export --model M --format onnx --out OUT``: a trained model's scoring network as
ONNX.

The export folder (``model.onnx``, ``export.json`` and, with ``--frontend outside``, the
front end's filter bank and window as ``.npy``) is scored on a box without PyTorch by
`stethoscope.onnx_runtime` (numpy, soundfile, onnxruntime). Every export is checked before
it is written: torch and ONNX score the same clip (see `stethoscope.export`).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..engine import RunContext
from .common import info, weights_dirs
from .flags import add_quiet, add_weights_dir

FORMATS = ("onnx",)


def add_parser(sub: Any) -> None:
    from ..export import FRONTEND_MODES, OPSET, exportable_systems

    p = sub.add_parser(
        "export",
        help="export a trained model's scoring network (ONNX) for edge boxes",
        description="Export a trained model's scoring network. Systems: "
        f"{', '.join(exportable_systems())}; the others say why "
        "they cannot.",
    )
    p.add_argument("--model", required=True, help="model folder written by `train`")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx")
    p.add_argument("--out", required=True, help="export folder (written atomically)")
    p.add_argument(
        "--frontend",
        default="outside",
        choices=FRONTEND_MODES,
        help="outside (default): log-mel in numpy by the runtime, the graph takes "
        "log-mels; "
        "inside: STFT and log-mel in the graph, which takes the 16 kHz waveform",
    )
    p.add_argument(
        "--seconds",
        type=float,
        help="clip length that ldgan / tldiffgan / mel_stats exports score (default 10; "
        "their scoring noise or percentiles are fixed per length); other systems "
        "score any length",
    )
    p.add_argument(
        "--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET}; >= 17 for STFT)"
    )
    add_weights_dir(p)
    add_quiet(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_onnx, require_onnx

    require_onnx()
    ctx = RunContext(progress=False, weights_dirs=weights_dirs(args))
    record = export_onnx(
        args.model,
        args.out,
        frontend=args.frontend,
        seconds=args.seconds,
        opset=args.opset,
        ctx=ctx,
    )
    check = record["check"]
    length = (
        f", clips of {record['clip_samples'] / record['sample_rate']:g} s"
        if record["clip_samples"]
        else ""
    )
    print(f"exported {record['system']} ({args.frontend} front end{length}) to {args.out}")
    info(args)(
        f"check: torch {check['torch_score']:.9g}, ONNX {check['onnx_score']:.9g} "
        f"(relative difference {check['rel_diff']:.2g}); score with: "
        f"python -m stethoscope.onnx_runtime {args.out} FILE..."
    )
    return 0
