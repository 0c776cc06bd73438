"""ONNX exports against the torch path: milliseconds per clip and the largest score difference.

Each system (CPU configs where packaged; dcase_ae and gamma_vae in MSE and MAHALA modes) is
fitted on ``--train`` toy-factory clips in a fresh process with ``--threads`` torch threads,
exported with the front end outside (numpy log-mel) and inside the graph (STFT nodes), and
``--clips`` test clips of ``--seconds`` are scored one at a time from memory (decoded once
beforehand: no file reading, no cache), after a warm-up:

* torch: ``system.score_waveforms([wave])`` (torch log-mel + network + score);
* ONNX outside / inside: ``EdgeModel.score_waveform(wave)`` of `stethoscope.onnx_runtime`, with
  ``--threads`` onnxruntime threads.

Reported per system and mode: median and p90 ms per clip, and the largest absolute and
relative score difference to torch over the clips. EfficientAT encoders use the real mn04
weights when found (``$STETHOSCOPE_WEIGHTS_DIR``, else ../shared/weights), else random mn04.
Timings mean something only on a quiet machine; the differences do not depend on load.

    python benchmarks/bench_onnx.py [--threads 1] [--train 20] [--clips 30] [--seconds 10]
    python benchmarks/bench_onnx.py --train 6 --clips 3 --seconds 4 --systems dcase_ae   # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import child_json, last_line, markdown_header, table, toy_set, use_shared_weights  # noqa: E402
from bench_throughput import config_of  # noqa: E402

VARIANTS = {"dcase_ae": [{}, {"score_mode": "mahala"}], "gamma_vae": [{}, {"score_mode": "mahala"}]}
MODES = ("outside", "inside")


def timed(score, waves: list[np.ndarray]) -> tuple[list[float], np.ndarray]:
    """(ms per clip, scores) of ``score(wave)`` for each wave, one at a time."""
    times, scores = [], []
    for wave in waves:
        start = time.perf_counter()
        scores.append(score(wave))
        times.append(1000 * (time.perf_counter() - start))
    return times, np.array(scores, dtype=np.float64)


def one_system(data: Path, name: str, overrides: dict, args: dict) -> dict:
    """Fit, export both ways, time and compare (in a fresh process)."""
    import torch

    from stethoscope.data import load_audio, scan
    from stethoscope.engine import RunContext
    from stethoscope.export import export_onnx
    from stethoscope.onnx_runtime import EdgeModel
    from stethoscope.systems import get_system

    torch.set_num_threads(args["threads"])
    clips = scan(data)
    train = [c for c in clips if c.split == "train"][: args["train"]]
    test = [c for c in clips if c.split == "test"][: args["clips"] + 2]
    params = {**config_of(name, args["epochs"], args["real_weights"])[0], **overrides}
    ctx = RunContext(seed=0, progress=False)
    system = get_system(name, **params).fit(train, ctx=ctx)
    waves = [load_audio(c.path) for c in test]
    row = {
        "system": name,
        "variant": ",".join(f"{k}={v}" for k, v in overrides.items()),
        "modes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        system.save(Path(tmp) / "model")
        timed(lambda w: system.score_waveforms([w], ctx=ctx)[0], waves[:2])  # warm-up
        torch_ms, expected = timed(lambda w: system.score_waveforms([w], ctx=ctx)[0], waves[2:])
        row["torch"] = {
            "median_ms": float(np.median(torch_ms)),
            "p90_ms": float(np.percentile(torch_ms, 90)),
        }
        for mode in MODES:
            export_onnx(
                Path(tmp) / "model", Path(tmp) / mode, frontend=mode, seconds=args["seconds"]
            )
            edge = EdgeModel(Path(tmp) / mode, threads=args["threads"])
            timed(lambda w, e=edge: e.score_waveform(w).score, waves[:2])
            ms, got = timed(lambda w, e=edge: e.score_waveform(w).score, waves[2:])
            diff = np.abs(got - expected)
            row["modes"][mode] = {
                "median_ms": float(np.median(ms)),
                "p90_ms": float(np.percentile(ms, 90)),
                "max_abs_diff": float(diff.max()),
                "max_rel_diff": float((diff / np.maximum(np.abs(expected), 1e-12)).max()),
            }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and onnxruntime threads (default 1)"
    )
    parser.add_argument("--train", type=int, default=20, help="training clips (default 20)")
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs for systems that train (default 2)"
    )
    parser.add_argument(
        "--clips", type=int, default=30, help="clips scored one at a time (default 30)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument(
        "--systems", nargs="+", help="default: dcase_ae gamma_vae embedding_knn ldgan tldiffgan"
    )
    parser.add_argument(
        "--data", type=Path, help="toy set folder, written once and reused (default: temporary)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        data, name, overrides, spec = args.child
        print(json.dumps(one_system(Path(data), name, json.loads(overrides), json.loads(spec))))
        return
    from stethoscope.export import exportable_systems

    names = args.systems or exportable_systems()
    real_weights = use_shared_weights()
    spec = {
        "threads": args.threads,
        "train": args.train,
        "epochs": args.epochs,
        "clips": args.clips,
        "seconds": args.seconds,
        "real_weights": real_weights,
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = toy_set(
            args.data or Path(tmp) / "toy",
            args.train,
            args.clips + 2,
            seconds=args.seconds,
            exact=False,
        )
        for name in names:
            for overrides in VARIANTS.get(name, [{}]):
                print(f"[{name} {overrides or ''}]", file=sys.stderr)
                try:
                    rows.append(
                        child_json(
                            [
                                __file__,
                                "--child",
                                str(data),
                                name,
                                json.dumps(overrides),
                                json.dumps(spec),
                            ]
                        )
                    )
                except (
                    Exception
                ) as err:  # a failing system is reported in its row; the others still run
                    rows.append(
                        {
                            "system": name,
                            "variant": str(overrides),
                            "error": last_line(getattr(err, "stderr", "") or str(err)),
                        }
                    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(report(rows, args, real_weights))


def report(rows: list[dict], args: argparse.Namespace, real_weights: bool) -> str:
    body = []
    for r in rows:
        label = f"{r['system']} {r['variant']}".strip()
        if "error" in r:
            body.append([label, "failed: " + r["error"], "", "", "", "", ""])
            continue
        t = r["torch"]
        for mode, m in r["modes"].items():
            body.append(
                [
                    label,
                    mode,
                    f"{t['median_ms']:.1f} / {t['p90_ms']:.1f}",
                    f"{m['median_ms']:.1f} / {m['p90_ms']:.1f}",
                    f"{t['median_ms'] / m['median_ms']:.2f}",
                    f"{m['max_abs_diff']:.2g}",
                    f"{m['max_rel_diff']:.2g}",
                ]
            )
    weights = "real mn04 weights" if real_weights else "random mn04 weights (real ones absent)"
    note = (
        f"Toy-factory clips of {args.seconds:g} s scored one at a time from memory after a warm-up, "
        f"{args.clips} clips; {args.threads} torch / onnxruntime thread(s); fitted on {args.train} clips "
        f"({args.epochs} epochs where the system trains); encoders: {weights}.\n"
    )
    return "\n".join(
        [
            markdown_header("ONNX export: onnxruntime vs torch"),
            note,
            table(
                [
                    "system",
                    "front end",
                    "torch ms median / p90",
                    "ONNX ms median / p90",
                    "speed-up",
                    "max |score diff|",
                    "max relative diff",
                ],
                body,
            ),
        ]
    )


if __name__ == "__main__":
    main()
