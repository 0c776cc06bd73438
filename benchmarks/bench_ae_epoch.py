"""Seconds per `dcase_ae` training epoch on N toy clips, in this process, with T torch threads.

The issue-11 target is an epoch on 3,000 clips in at most 35 s on 2 cores. stethoscope is
imported before torch, so OpenMP's wait policy is the package's (PASSIVE), as in the CLI.

    python benchmarks/bench_ae_epoch.py --data runs/toy-scale [--clips 3000] [--threads 1] [--epochs 2]

``--data``: a toy set with enough training clips (`stethoscope toy --out runs/toy-scale
--machines fan --train 3000 --test 200`, or the folder `bench_scale.py --data` wrote).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import stethoscope  # noqa: F401  (sets the wait policy before torch loads)
import torch
from stethoscope.data import scan
from stethoscope.engine import RunContext
from stethoscope.systems import get_system


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = [c for c in scan(args.data) if c.split == "train"][: args.clips]
    system = get_system("dcase_ae", epochs=args.epochs, threshold_fit="in_sample")
    start = time.perf_counter()
    system.fit(clips, ctx=RunContext(seed=0, progress=False, threads=args.threads))
    epochs = ", ".join(f"{s:.1f}" for s in system.epoch_seconds_)
    print(
        f"{len(clips)} clips, {args.threads} thread(s): epochs {epochs} s; fit {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
