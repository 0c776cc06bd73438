"""Real-time factor and fleet throughput per core of every registered system, scoring 10 s clips.

Each system (its CPU config ``<system>_cpu`` where one is packaged, else its default config)
is fitted on ``--train`` toy-factory clips (``--epochs`` epochs: scoring cost does not depend
on how long a model trained) in a fresh process with ``--threads`` torch threads, then scores
with no feature cache (file read + decode + features + model + score):

* one clip at a time, ``--latency-clips`` clips after a warm-up: median and p90 ms per clip, and
  the real-time factor (processing time / audio duration) of that median;
* all ``--batch-clips`` test clips in one call (how a fleet's backlog is scored): clips/s,
  and clips/s per core (divided by the torch threads; file reading and decoding run in two
  extra threads that overlap the transform).

Targets: TLDiffGAN's CPU config at <= 50 ms per 10 s clip on 2 cores; mel_stats at <= 5 ms on one core
(``--threads 1``). Encoders use the real
EfficientAT mn04 weights when found (``$STETHOSCOPE_WEIGHTS_DIR``, else ../shared/weights),
otherwise randomly initialised mn04 (same cost), said in the table.

    python benchmarks/bench_throughput.py [--threads 2] [--train 100] [--batch-clips 200]
    python benchmarks/bench_throughput.py --train 6 --batch-clips 6 --latency-clips 3 --seconds 2   # smoke run
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
from _common import (
    bench_context,
    child_json,
    last_line,
    markdown_header,
    per_clip_ms,
    table,  # noqa: E402
    toy_set,
    use_shared_weights,
)

TARGET_MS = {
    "tldiffgan": 50.0,
    "mel_stats": 5.0,
}  # issue 11 (TLDiffGAN, 2 cores) and 21 (mel_stats, 1 core)


def config_of(name: str, epochs: int, real_weights: bool) -> tuple[dict, str]:
    """The benchmarked hyperparameters of ``name`` and the config they come from."""
    from stethoscope.config import load_config, packaged_config_path
    from stethoscope.systems import list_systems

    variant = f"{name}_cpu" if packaged_config_path(f"{name}_cpu").is_file() else None
    params = load_config(name, variant) if variant else load_config(name)
    label = variant or name
    system = list_systems()[name]
    if "epochs" in system.param_names():
        params["epochs"] = epochs
    for part, part_class in system.parts.items():  # tldiffgan's ldgan: its epochs nest there
        if "epochs" in part_class.constructor_param_names():
            params[part] = {**params.get(part, {}), "epochs": epochs}
    if params.get("encoder") == "efficientat_mn04" and not real_weights:
        params["encoder"] = "random"
        label += " (mn04 random weights: real ones absent)"
    return params, label


def one_system(data: Path, name: str, args: dict) -> dict:
    """Fit, then score one clip at a time and in one batch, no cache (in a fresh process)."""
    import torch

    from stethoscope.data import scan
    from stethoscope.systems import get_system

    torch.set_num_threads(args["threads"])
    clips = scan(data)
    train = [c for c in clips if c.split == "train"][: args["train"]]
    test = [c for c in clips if c.split == "test"]
    params, _ = config_of(name, args["epochs"], args["real_weights"])
    ctx = bench_context(cache_dir=None)
    system = get_system(name, **params).fit(train, ctx=ctx)
    system.score(test[:2], ctx)  # warm-up
    times = per_clip_ms(lambda c: system.score(c, ctx), test[: args["latency_clips"]])
    start = time.perf_counter()
    system.score(test[: args["batch_clips"]], ctx)
    batch_s = time.perf_counter() - start
    return {
        "system": name,
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "clips_per_s": min(len(test), args["batch_clips"]) / batch_s,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--train", type=int, default=100, help="training clips (default 100)")
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs for systems that train (default 2)"
    )
    parser.add_argument(
        "--batch-clips", type=int, default=200, help="clips scored in one call (default 200)"
    )
    parser.add_argument(
        "--latency-clips", type=int, default=30, help="clips scored one at a time (default 30)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument("--systems", nargs="+", help="default: every registered system")
    parser.add_argument(
        "--data", type=Path, help="toy set folder, written once and reused (default: temporary)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_system(Path(args.child[0]), args.child[1], json.loads(args.child[2]))))
        return
    from stethoscope.systems import list_systems

    names = args.systems or sorted(list_systems())
    real_weights = use_shared_weights()
    spec = {
        "threads": args.threads,
        "train": args.train,
        "epochs": args.epochs,
        "batch_clips": args.batch_clips,
        "latency_clips": args.latency_clips,
        "real_weights": real_weights,
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = toy_set(
            args.data or Path(tmp) / "toy",
            args.train,
            max(args.batch_clips, args.latency_clips + 2),
            seconds=args.seconds,
            exact=False,
        )
        for name in names:
            print(f"[{name}]", file=sys.stderr)
            try:
                rows.append(child_json([__file__, "--child", str(data), name, json.dumps(spec)]))
            except (
                Exception
            ) as err:  # a failing system is reported in its row; the others still run
                rows.append(
                    {"system": name, "error": last_line(getattr(err, "stderr", "") or str(err))}
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(report(rows, args, real_weights))


def report(rows: list[dict], args: argparse.Namespace, real_weights: bool) -> str:
    body = []
    for r in rows:
        label = config_of(r["system"], args.epochs, real_weights)[1]
        if "error" in r:
            body.append([r["system"], label, "failed: " + r["error"], "", "", "", "", ""])
            continue
        verdict = ""
        if r["system"] in TARGET_MS:
            target = TARGET_MS[r["system"]]
            verdict = f"{'met' if r['median_ms'] <= target else '**missed**'} (<= {target:g} ms)"
        body.append(
            [
                r["system"],
                label,
                f"{r['median_ms']:.1f}",
                f"{r['p90_ms']:.1f}",
                f"{r['median_ms'] / 1000 / args.seconds:.4f}",
                f"{r['clips_per_s']:.1f}",
                f"{r['clips_per_s'] / r['threads']:.1f}",
                verdict,
            ]
        )
    note = (
        f"Toy-factory clips of {args.seconds:g} s, {args.threads} torch threads, no feature cache (file read + "
        f"decode + features + model + score); fitted on {args.train} clips ({args.epochs} epochs where the "
        f"system trains); latency over {args.latency_clips} clips one at a time after a warm-up; throughput "
        f"over {args.batch_clips} clips in one call. Real-time factor = median processing time / audio "
        f"duration.\n"
    )
    return "\n".join(
        [
            markdown_header("Real-time factor and throughput per core"),
            note,
            table(
                [
                    "system",
                    "config",
                    "ms per clip (median)",
                    "p90 ms",
                    "real-time factor",
                    "clips/s (batch)",
                    "clips/s per core",
                    "target",
                ],
                body,
            ),
        ]
    )


if __name__ == "__main__":
    main()
