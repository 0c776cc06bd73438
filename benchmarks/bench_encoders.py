"""Speed and memory of each encoder: ms per 10 s clip and peak RSS, one process per encoder.

Usage: ``python benchmarks/bench_encoders.py [--threads 2] [--clips 8] [--encoders a,b]``.
Encoders whose real weights are absent run with random weights (same architecture and
cost) and are marked so. Prints a Markdown table plus the command and machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[2]))
from stethoscope.encoders import get_encoder
from stethoscope.errors import CheckpointError
name, n = sys.argv[1], int(sys.argv[3])
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
print(json.dumps({"encoder": name, "weights": enc.weights, "dim": enc.dim, "ms_per_clip": ms,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--encoders", default="efficientat_mn04,random,eat_base,beats_iter3")
    args = parser.parse_args()
    rows = []
    for name in args.encoders.split(","):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        out = subprocess.run([sys.executable, "-c", CHILD, name, str(args.threads), str(args.clips)],
                             capture_output=True, text=True, env=env)
        if out.returncode != 0:
            rows.append({"encoder": name, "error": out.stderr.strip().splitlines()[-1]})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| encoder | weights | dim | ms per 10 s clip | peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['encoder']} | error: {r['error']} | | | |")
        else:
            print(f"| {r['encoder']} | {r['weights']} | {r['dim']} | {r['ms_per_clip']:.0f} | {r['peak_rss_mb']:.0f} |")
    print()
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs visible, {args.threads} torch threads, "
          f"batch 1, {args.clips} clips after one warm-up; {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
