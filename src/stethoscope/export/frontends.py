"""The audio front ends of an ONNX export: their parameters, their arrays and their ONNX graphs.

Two front ends turn a 16 kHz waveform into what a scoring network reads:

* ``dcase_logmel`` (`features.logmel.LogMel`): centred STFT with zero padding, periodic Hann
  window, power, Slaney mel filters, ``10 log10(max(mel, eps))`` (or ``+ eps``);
* ``efficientat_mel`` (`encoders.efficientat.EfficientATMel`): exact 2x polyphase up-sampling
  to 32 kHz (scipy's ``resample_poly`` filter), pre-emphasis 0.97, centred STFT with reflect
  padding and an 800-sample symmetric Hann window, Kaldi mel banks, ``(log(mel + 1e-5) + 4.5) / 5``.

A `FrontEnd` is what ``export.json`` records of one of them and the arrays (filter bank, window,
resampling filter) that reproduce it exactly: with ``--frontend outside`` they are saved as
``.npy`` files for the numpy runtime (`stethoscope.onnx_runtime`); with ``inside`` `add_to_graph`
prepends the same computation to the network as ONNX nodes (opset >= 17 ``STFT``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import scipy.signal
import torch
from onnx import TensorProto, helper, numpy_helper

from ..encoders.efficientat import EfficientATMel
from ..features.logmel import EPS, LogMelParams, mel_filterbank

DCASE, EFFICIENTAT = "dcase_logmel", "efficientat_mel"
WAVEFORM = "waveform"


@dataclass
class FrontEnd:
    """One front end: ``params`` go into export.json, ``arrays`` (float32) reproduce it."""

    kind: str
    input: str  # the scoring network's input it feeds
    params: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def record(self, files: dict[str, str] | None = None) -> dict[str, Any]:
        """What export.json says of this front end (``files``: array name -> file in the folder)."""
        return {
            "kind": self.kind,
            "input": self.input,
            **self.params,
            **({"files": files} if files else {}),
        }


def dcase_frontend(params: LogMelParams, input_name: str = "logmel") -> FrontEnd:
    """The DCASE log-mel of ``params``: the same filter bank and window as `LogMel`."""
    if params.log_floor not in ("max", "add"):
        raise ValueError(f"log_floor must be 'max' or 'add', got {params.log_floor!r}")
    window = torch.hann_window(params.n_fft, periodic=True).numpy()
    return FrontEnd(
        DCASE,
        input_name,
        {**params.as_dict(), "eps": EPS},
        {
            "mel_filterbank": mel_filterbank(params.sample_rate, params.n_fft, params.n_mels),
            "window": window.astype(np.float32),
        },
    )


def resample_filter() -> np.ndarray:
    """The FIR filter that scipy's ``resample_poly(x, 2, 1)`` applies to float32 input: Kaiser
    (beta 5), 41 taps, cast to float32, times 2."""
    max_rate = 2
    half_len = 10 * max_rate
    taps = scipy.signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(
        np.float32
    )
    return taps * np.float32(max_rate)


def efficientat_frontend(input_name: str = "mn04_mel") -> FrontEnd:
    """EfficientAT's evaluation front end at 16 kHz input (up-sampled to 32 kHz)."""
    mel = EfficientATMel()
    pad = (mel.n_fft - mel.win_length) // 2  # torch.stft centres a shorter window in n_fft
    window = np.zeros(mel.n_fft, np.float32)
    window[pad : pad + mel.win_length] = mel.window.numpy()
    params = {
        "sample_rate": 16_000,
        "upsample": 2,
        "preemphasis": 0.97,
        "n_fft": mel.n_fft,
        "hop_length": mel.hop_length,
        "pad_mode": "reflect",
        "log_offset": 1e-5,
        "shift": 4.5,
        "scale": 5.0,
    }
    return FrontEnd(
        EFFICIENTAT,
        input_name,
        params,
        {
            "mel_filterbank": mel.banks.numpy().astype(np.float32),
            "window": window,
            "resample_filter": resample_filter(),
        },
    )


# -- ONNX graphs ---------------------------------------------------------------------------
class _Builder:
    """Nodes and initializers of one front end, every name prefixed so that none collides."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray | float | int | list) -> str:
        array = np.asarray(value)
        full = f"{self.prefix}{name}"
        self.inits.append(numpy_helper.from_array(array, full))
        return full

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        self._n += 1
        name = out or f"{self.prefix}{op_type.lower()}_{self._n}"
        self.nodes.append(
            helper.make_node(op_type, inputs, [name], name=f"{self.prefix}node_{self._n}", **attrs)
        )
        return name


def _stft_power(b: _Builder, signal: str, fe: FrontEnd, pad_mode: str) -> str:
    """(B, samples) float32 -> centred STFT power (B, frames, n_fft / 2 + 1) in float64, as the
    numpy runtime computes it (closer to exact than either float32 FFT)."""
    n_fft, hop = fe.params["n_fft"], fe.params["hop_length"]
    pads = b.const("pads", np.array([0, n_fft // 2, 0, n_fft // 2], np.int64))
    padded = b.op("Cast", [b.op("Pad", [signal, pads], mode=pad_mode)], to=TensorProto.DOUBLE)
    framed = b.op("Unsqueeze", [padded, b.const("axis2", np.array([2], np.int64))])
    window = b.const("window", fe.arrays["window"].astype(np.float64))
    spec = b.op(
        "STFT",
        [
            framed,
            b.const("hop", np.array(hop, np.int64)),
            window,
            b.const("n_fft", np.array(n_fft, np.int64)),
        ],
        onesided=1,
    )  # (B, frames, bins, 2)
    return b.op(
        "ReduceSum",
        [b.op("Mul", [spec, spec]), b.const("last", np.array([-1], np.int64))],
        keepdims=0,
    )


def _dcase_nodes(b: _Builder, fe: FrontEnd, wave: str) -> None:
    p = fe.params
    power = _stft_power(b, wave, fe, "constant")
    if p["power"] != 2.0:
        power = b.op("Pow", [power, b.const("half_power", np.array(p["power"] / 2, np.float64))])
    filters = fe.arrays["mel_filterbank"].astype(np.float64)
    mel = b.op("MatMul", [power, b.const("filters_t", np.ascontiguousarray(filters.T))])
    eps = b.const("eps", np.array(p["eps"], np.float64))
    floored = b.op("Max" if p["log_floor"] == "max" else "Add", [mel, eps])
    scale = b.const(
        "scale", np.array(20.0 / p["power"] / math.log(10.0), np.float64)
    )  # s log10 x = s / ln 10 ln x
    db = b.op("Cast", [b.op("Mul", [b.op("Log", [floored]), scale])], to=TensorProto.FLOAT)
    b.op("Transpose", [db], out=fe.input, perm=[0, 2, 1])


def _resample_nodes(b: _Builder, fe: FrontEnd, wave: str) -> str:
    """scipy's ``resample_poly(x, 2, 1)`` of float32 input as float32 Mul/Add nodes in scipy's
    order of operations (see `stethoscope.onnx_runtime.resample_2x`), so that it rounds the
    same: the 8-16 kHz band of the result is nothing but the filter's stop-band leakage."""
    phases = (
        np.concatenate([[0.0], fe.arrays["resample_filter"]])
        .astype(np.float32)
        .reshape(-1, 2)
        .T[:, ::-1]
    )
    per = phases.shape[1]
    extra = per // 2 + 1  # rows = samples + extra
    padded = b.op("Pad", [wave, b.const("rs_pads", np.array([0, per - 1, 0, extra], np.int64))])
    axis = b.const("rs_axis", np.array([1], np.int64))
    outputs = []
    for t in range(2):
        acc = None
        for j in range(per):
            end = j - (per - 1) if j < per - 1 else 2**62
            part = b.op(
                "Slice",
                [
                    padded,
                    b.const(f"rs_start{t}_{j}", np.array([j], np.int64)),
                    b.const(f"rs_end{t}_{j}", np.array([end], np.int64)),
                    axis,
                ],
            )
            term = b.op(
                "Mul", [part, b.const(f"rs_tap{t}_{j}", np.array(phases[t, j], np.float32))]
            )
            acc = term if acc is None else b.op("Add", [acc, term])
        assert acc is not None  # the filter has taps in every phase
        outputs.append(b.op("Unsqueeze", [acc, b.const(f"rs_unsq{t}", np.array([2], np.int64))]))
    pairs = b.op("Concat", [*outputs], axis=2)  # (B, rows, 2): output 2 i + t
    flat = b.op("Reshape", [pairs, b.const("rs_flat", np.array([0, -1], np.int64))])
    # scipy keeps outputs [per, per + 2 n) of the 2 (n + extra) computed:
    # the end is per - 2 extra < 0
    return b.op(
        "Slice",
        [
            flat,
            b.const("rs_keep0", np.array([per], np.int64)),
            b.const("rs_keep1", np.array([per - 2 * extra], np.int64)),
            axis,
        ],
    )


def _efficientat_nodes(b: _Builder, fe: FrontEnd, wave: str) -> None:
    p = fe.params
    up = _resample_nodes(b, fe, wave)
    one, big, last = (
        b.const(n, np.array([v], np.int64))
        for n, v in (("one", 1), ("big", 2**62), ("last_axis", -1))
    )
    zero, minus1 = (
        b.const("zero", np.array([0], np.int64)),
        b.const("minus1", np.array([-1], np.int64)),
    )
    current = b.op("Slice", [up, one, big, last])
    previous = b.op("Slice", [up, zero, minus1, last])
    emphasised = b.op(
        "Sub",
        [current, b.op("Mul", [previous, b.const("pre", np.array(p["preemphasis"], np.float32))])],
    )
    power = _stft_power(b, emphasised, fe, p["pad_mode"])
    banks = fe.arrays["mel_filterbank"].astype(np.float64)
    mel = b.op("MatMul", [power, b.const("banks_t", np.ascontiguousarray(banks.T))])
    logmel = b.op(
        "Log", [b.op("Add", [mel, b.const("offset", np.array(p["log_offset"], np.float64))])]
    )
    scaled = b.op(
        "Div",
        [
            b.op("Add", [logmel, b.const("shift", np.array(p["shift"], np.float64))]),
            b.const("scale", np.array(p["scale"], np.float64)),
        ],
    )
    b.op("Transpose", [b.op("Cast", [scaled], to=TensorProto.FLOAT)], out=fe.input, perm=[0, 2, 1])


def add_to_graph(model: onnx.ModelProto, frontends: list[FrontEnd]) -> onnx.ModelProto:
    """The network ``model`` with every front end's input computed in the graph from one
    (batch, samples) float32 ``waveform`` input at 16 kHz."""
    graph = model.graph
    fed = {fe.input for fe in frontends}
    missing = fed - {i.name for i in graph.input}
    if missing:
        raise ValueError(f"the network has no input(s) {sorted(missing)}")
    nodes, inits = [], []
    for k, fe in enumerate(frontends):
        b = _Builder(f"frontend{k}_")
        (_dcase_nodes if fe.kind == DCASE else _efficientat_nodes)(b, fe, WAVEFORM)
        nodes += b.nodes
        inits += b.inits
    kept = [i for i in graph.input if i.name not in fed]
    del graph.input[:]
    graph.input.extend(
        [helper.make_tensor_value_info(WAVEFORM, TensorProto.FLOAT, ["batch", "samples"]), *kept]
    )
    network_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + network_nodes)
    graph.initializer.extend(inits)
    onnx.checker.check_model(model)
    return model
