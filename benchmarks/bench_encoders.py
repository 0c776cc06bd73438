"""Speed and memory of each encoder: ms per 10 s clip and peak RSS, one process per encoder.

Usage: ``python benchmarks/bench_encoders.py [--threads 2] [--clips 8] [--encoders a,b]``.
Encoders whose real weights are absent run with random weights (same architecture and
cost) and are marked so. Prints a Markdown table plus the command and machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import child_json, last_line, peak_rss_mb, provenance  # noqa: E402


def one_encoder(name: str, threads: int, n: int) -> dict:
    """Embed n random 10 s waveforms one at a time after one warm-up (called in a subprocess)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from stethoscope.encoders import get_encoder
    from stethoscope.errors import CheckpointError

    try:
        enc = get_encoder(name)
    except CheckpointError:
        enc = get_encoder(name, weights_path="random")
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(160_000)).astype(np.float32) for _ in range(n)]
    enc.embed(waves[:1], 16_000)  # warm-up
    t0 = time.perf_counter()
    for w in waves:
        enc.embed([w], 16_000)
    ms = 1000 * (time.perf_counter() - t0) / n
    return {
        "encoder": name,
        "weights": enc.weights,
        "dim": enc.dim,
        "ms_per_clip": ms,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--encoders", default="efficientat_mn04,random,eat_base,beats_iter3")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_encoder(args.child, args.threads, args.clips)))
        return
    rows = []
    env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for name in args.encoders.split(","):
        try:
            rows.append(
                child_json(
                    [
                        __file__,
                        "--child",
                        name,
                        "--threads",
                        str(args.threads),
                        "--clips",
                        str(args.clips),
                    ],
                    env,
                )
            )
        except subprocess.CalledProcessError as err:
            rows.append({"encoder": name, "error": last_line(err.stderr)})
    print("| encoder | weights | dim | ms per 10 s clip | peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['encoder']} | error: {r['error']} | | | |")
        else:
            print(
                f"| {r['encoder']} | {r['weights']} | {r['dim']} | {r['ms_per_clip']:.0f} | {r['peak_rss_mb']:.0f} |"
            )
    print()
    print(provenance())
    print(
        f"{args.threads} torch threads per encoder process, batch 1, {args.clips} clips after one warm-up"
    )


if __name__ == "__main__":
    main()
