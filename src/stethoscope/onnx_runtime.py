"""Score audio with a model exported by ``stethoscope export --format onnx``, on a box without
PyTorch.

Needs only numpy, soundfile and onnxruntime (soxr too, for audio not at 16 kHz): this file
imports nothing else from stethoscope, so it can be copied on its own next to an export folder.

    model = EdgeModel("export/fan")
    result = model.score_file("clip.wav")       # EdgeScore: score, decision, threshold, map
    result = model.score_waveform(wave, 16_000)

    python -m stethoscope.onnx_runtime export/fan clip1.wav clip2.wav   # or: python onnx_runtime.py
    ...

The folder holds ``model.onnx``, ``export.json`` and, when the front end stays outside the graph
(``--frontend outside``), the arrays that reproduce it (mel filter bank, window, resampling
filter) as ``.npy`` files; the log-mel is then computed here in numpy (float64, cast to float32),
else the graph takes the raw 16 kHz waveform.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

FORMAT, FORMAT_VERSION = "stethoscope-onnx", 1
SAMPLE_RATE = 16_000
_BLOCK = 4096  # STFT frames per block: memory stays flat on hour-long recordings


class EdgeError(Exception):
    """A clear problem with an export folder or an audio input (named in the message)."""


@dataclass
class EdgeScore:
    """One clip's result: higher ``score`` = more anomalous; ``decision`` 1 = anomaly
    (score above the model's threshold); ``anomaly_map`` (n_mels, frames) where the system has
    one."""

    score: float
    decision: int
    threshold: float
    anomaly_map: np.ndarray | None = None

    @property
    def frame_error(self) -> np.ndarray | None:
        """Per-frame error (frames,): the anomaly map averaged over mel bins."""
        return None if self.anomaly_map is None else self.anomaly_map.mean(axis=0)


# -- front ends (numpy mirrors of stethoscope.features.logmel and EfficientAT's front end) ----
def _power_blocks(
    signal: np.ndarray,
    window: np.ndarray,
    n_fft: int,
    hop: int,
    pad_mode: Literal["constant", "reflect"],
) -> Iterator[np.ndarray]:
    """The centred STFT power of ``signal`` in blocks of frames: (frames, n_fft / 2 + 1) float64."""
    padded = np.pad(signal.astype(np.float64), n_fft // 2, mode=pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    win = window.astype(np.float64)
    for start in range(0, len(frames), _BLOCK):
        spec = np.fft.rfft(frames[start : start + _BLOCK] * win, axis=1)
        yield spec.real**2 + spec.imag**2


def dcase_logmel(
    wave: np.ndarray, params: dict[str, Any], arrays: dict[str, np.ndarray]
) -> np.ndarray:
    """(n_mels, frames) float32 log-mel in dB, as `stethoscope.features.logmel.LogMel`."""
    filters = arrays["mel_filterbank"].astype(np.float64)
    power = params["power"]
    out = []
    for block in _power_blocks(
        wave, arrays["window"], params["n_fft"], params["hop_length"], "constant"
    ):
        mel = (block if power == 2.0 else block ** (power / 2)) @ filters.T
        floored = (
            np.maximum(mel, params["eps"]) if params["log_floor"] == "max" else mel + params["eps"]
        )
        out.append((20.0 / power) * np.log10(floored))
    return np.ascontiguousarray(np.concatenate(out).T, dtype=np.float32)


def resample_2x(wave: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """scipy's ``resample_poly(wave, 2, 1)`` of float32 samples, operation by operation: the
    float32 filter after one leading zero, split into two phases, each output sample
    accumulated in float32 over ascending input samples, as scipy's ``upfirdn`` loop does.
    The same float32 roundings matter: the 8-16 kHz band of the result holds nothing but the
    filter's stop-band leakage, at the level of those roundings."""
    wave = np.asarray(wave, np.float32)
    n = len(wave)
    phases = (
        np.concatenate([[0.0], taps]).astype(np.float32).reshape(-1, 2).T[:, ::-1]
    )  # (2, 21), each flipped
    per = phases.shape[1]
    rows = n + per // 2 + 1  # enough rows for the outputs kept below
    padded = np.concatenate([np.zeros(per - 1, np.float32), wave, np.zeros(rows - n, np.float32)])
    out = np.zeros((rows, 2), np.float32)
    for t in range(2):
        acc = out[:, t]
        for j in range(per):
            acc += padded[j : j + rows] * phases[t, j]
    return out.reshape(-1)[per : per + 2 * n]  # scipy drops (half_len + 1) leading samples


def efficientat_mel(
    wave: np.ndarray, params: dict[str, Any], arrays: dict[str, np.ndarray]
) -> np.ndarray:
    """(128, frames) float32 normalised log-mel of EfficientAT's front end (16 kHz input)."""
    resampled = resample_2x(wave, arrays["resample_filter"])
    emphasised = (
        resampled[1:] - np.float32(params["preemphasis"]) * resampled[:-1]
    )  # float32, as torch
    banks = arrays["mel_filterbank"].astype(np.float64)
    out = []
    for block in _power_blocks(
        emphasised, arrays["window"], params["n_fft"], params["hop_length"], params["pad_mode"]
    ):
        out.append(
            (np.log(block @ banks.T + params["log_offset"]) + params["shift"]) / params["scale"]
        )
    return np.ascontiguousarray(np.concatenate(out).T, dtype=np.float32)


FRONTENDS: dict[str, Callable[[np.ndarray, dict, dict], np.ndarray]] = {
    "dcase_logmel": dcase_logmel,
    "efficientat_mel": efficientat_mel,
}


# -- audio -------------------------------------------------------------------------------------
def resample(wave: np.ndarray, sample_rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """``wave`` at ``target`` Hz: unchanged when already there, else soxr (HQ, as stethoscope)."""
    if sample_rate == target:
        return wave
    try:
        import soxr
    except ImportError:
        raise EdgeError(
            f"audio at {sample_rate} Hz needs resampling to {target} Hz: install soxr "
            f"(pip install soxr) or record at {target} Hz"
        ) from None
    return soxr.resample(wave, sample_rate, target, quality="HQ").astype(np.float32)


def read_audio(path: str | Path, channel: int = 0) -> tuple[np.ndarray, int]:
    """(float32 mono samples of ``channel``, sample rate) of an audio file."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        raise EdgeError(f"{path}: not a readable audio file ({err})") from None
    if not 0 <= channel < data.shape[1]:
        raise EdgeError(
            f"{path}: channel {channel} requested but the file has {data.shape[1]} channel(s)"
        )
    return np.ascontiguousarray(data[:, channel]), int(rate)


# -- the model ----------------------------------------------------------------------------------
class EdgeModel:
    """An export folder loaded into an onnxruntime CPU session."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        meta_path = self.folder / "export.json"
        if not (self.folder / "model.onnx").is_file() or not meta_path.is_file():
            raise EdgeError(
                f"{self.folder}: not an ONNX export folder (needs model.onnx and export.json)"
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise EdgeError(f"{meta_path}: corrupt ({err})") from None
        if self.meta.get("format") != FORMAT or self.meta.get("format_version") != FORMAT_VERSION:
            raise EdgeError(
                f"{meta_path}: format {self.meta.get('format')!r} version "
                f"{self.meta.get('format_version')!r}; this runtime reads {FORMAT!r} "
                f"{FORMAT_VERSION}"
            )
        self.frontends = []
        if self.meta["frontend"] == "outside":
            for fe in self.meta["frontends"]:
                arrays = {
                    k: np.load(self.folder / name, allow_pickle=False)
                    for k, name in fe["files"].items()
                }
                self.frontends.append((fe, arrays))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = options.inter_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.outputs = [o.name for o in self.session.get_outputs()]

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    @property
    def system(self) -> str:
        return str(self.meta["system"])

    def check(self, wave: np.ndarray, name: str = "waveform", length: bool = True) -> np.ndarray:
        """The waveform as contiguous float32, refused when not mono, non-finite or (``length``)
        of a length the export cannot score."""
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise EdgeError(
                f"{name}: expected mono samples (one dimension), got shape {wave.shape}"
            )
        if not np.isfinite(wave).all():
            raise EdgeError(f"{name}: contains NaN or infinite samples")
        if not length:
            return wave
        need, fixed = int(self.meta["min_samples"]), self.meta.get("clip_samples")
        if fixed is not None and len(wave) != fixed:
            raise EdgeError(
                f"{name}: {len(wave)} samples ({len(wave) / SAMPLE_RATE:g} s); this "
                f"{self.system} export scores clips of exactly {fixed} samples "
                f"({fixed / SAMPLE_RATE:g} s at 16 kHz): re-export with --seconds"
            )
        if len(wave) < need:
            raise EdgeError(
                f"{name}: {len(wave)} samples, shorter than the {need} this model needs"
            )
        return wave

    def feeds(self, wave: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's inputs for one checked 16 kHz waveform (batch of one)."""
        if not self.frontends:
            return {"waveform": wave[None]}
        return {
            fe["input"]: FRONTENDS[fe["kind"]](wave, fe, arrays)[None]
            for fe, arrays in self.frontends
        }

    def score_waveform(
        self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE, name: str = "waveform"
    ) -> EdgeScore:
        """Score one mono waveform (resampled to 16 kHz first when needed, see `resample`)."""
        wave = self.check(resample(self.check(wave, name, length=False), sample_rate), name)
        values = dict(zip(self.outputs, self.session.run(None, self.feeds(wave)), strict=True))
        score = float(values["score"][0])
        amap = values.get("anomaly_map")
        return EdgeScore(
            score, int(score > self.threshold), self.threshold, None if amap is None else amap[0]
        )

    def score_file(self, path: str | Path, channel: int = 0) -> EdgeScore:
        wave, rate = read_audio(path, channel)
        return self.score_waveform(wave, rate, name=str(path))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stethoscope.onnx_runtime FOLDER FILE...``: one line per file, exit 2 on a clear
    error."""
    p = argparse.ArgumentParser(
        prog="python -m stethoscope.onnx_runtime", description=__doc__.splitlines()[0]
    )
    p.add_argument("folder", help="export folder (model.onnx + export.json)")
    p.add_argument("files", nargs="+", help="audio files to score")
    p.add_argument(
        "--channel", type=int, default=0, help="channel of multichannel files (default 0)"
    )
    p.add_argument("--threads", type=int, help="onnxruntime threads (default: its own choice)")
    args = p.parse_args(argv)
    try:
        model = EdgeModel(args.folder, args.threads)
        width = max(len(f) for f in args.files)
        print(
            f"{'file':<{width}}  {'score':>12}  decision   ({model.system}, threshold "
            f"{model.threshold:.6g})"
        )
        for path in args.files:
            result = model.score_file(path, args.channel)
            print(
                f"{path:<{width}}  {result.score:12.6g}  "
                f"{'ANOMALY' if result.decision else 'normal'}",
                flush=True,
            )
    except EdgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
