"""DCASE AE training speed and memory on 100 / 400 / 1,600 toy clips, and scoring latency.

Each size runs in a fresh subprocess so that its peak RSS is its own. Training reads the
features from a cache warmed once beforehand (as a second training run finds it); the
latency is cold: no feature cache, every clip read, decoded and transformed.

    python benchmarks/bench_ae.py [--sizes 100 400 1600] [--epochs 2]
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
from _common import bench_context, child_json, per_clip_ms, peak_rss_mb, provenance, table  # noqa: E402


def one_size(root: Path, cache: Path, n: int, epochs: int) -> dict:
    """Train on the first n clips of ``root``, features from the warm ``cache`` (called in a subprocess)."""
    from stethoscope.data import scan
    from stethoscope.systems import get_system

    clips = [c for c in scan(root) if c.split == "train"][:n]
    base = peak_rss_mb()
    system = get_system("dcase_ae", epochs=epochs)
    t0 = time.perf_counter()
    system.fit(clips, ctx=bench_context(cache))
    total = time.perf_counter() - t0
    return {
        "n": n,
        "seconds_per_epoch": float(np.median(system.epoch_seconds_)),
        "fit_seconds": total,
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_fit_mb": base,
    }


def latency(root: Path, repeats: int = 50) -> dict:
    """ms per 10 s clip: file read + decode + log-mel + AE + score, one clip at a time, no cache."""
    import torch

    from stethoscope.data import scan
    from stethoscope.systems import get_system

    clips = [c for c in scan(root) if c.split == "train"]
    ctx = bench_context(cache_dir=None)
    system = get_system("dcase_ae", epochs=1).fit(clips[:20], ctx=ctx)
    out = {}
    for mode in ("mse", "mahala"):
        system.score_mode = mode
        system.score(clips[:2], ctx)
        times = per_clip_ms(lambda c: system.score(c, ctx), clips[:repeats])
        out[mode] = {
            "median_ms": float(np.median(times)),
            "p90_ms": float(np.percentile(times, 90)),
        }
    out["threads"] = torch.get_num_threads()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, cache, n, epochs = (
            Path(args.child[0]),
            Path(args.child[1]),
            int(args.child[2]),
            int(args.child[3]),
        )
        print(json.dumps(one_size(root, cache, n, epochs) if n > 0 else latency(root)))
        return
    from stethoscope.data import make_toy_dataset, scan
    from stethoscope.features.extract import logmels
    from stethoscope.systems import get_system

    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_dataset(
            Path(tmp) / "toy", machines=("fan",), n_train=max(args.sizes), n_test=0, seed=0
        )
        cache = Path(tmp) / "cache"
        # warm the feature cache once, as a second training run finds it
        logmels(scan(root), get_system("dcase_ae").logmel_params, cache_dir=cache, progress=False)

        def child(n: int) -> dict:
            return child_json(
                [__file__, "--child", str(root), str(cache), str(n), str(args.epochs)]
            )

        rows = [child(n) for n in args.sizes]
        lat = child(0)
    print(provenance() + "\n")
    print(
        table(
            [
                "clips",
                "vectors/epoch",
                "s/epoch (median)",
                "fit s (epochs + covariance + threshold)",
                "peak RSS MB",
            ],
            [
                [r["n"], r["n"] * 309, r["seconds_per_epoch"], r["fit_seconds"], r["peak_rss_mb"]]
                for r in rows
            ],
        )
    )
    growth = (rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]) / (rows[-1]["n"] - rows[0]["n"])
    print(f"\nmemory growth: {growth:.3f} MB per clip (target <= 0.25)")
    print(
        f"scoring latency per 10 s clip (read + log-mel + AE), {lat['threads']} threads: "
        f"MSE median {lat['mse']['median_ms']:.2f} ms (p90 {lat['mse']['p90_ms']:.2f}), "
        f"MAHALA median {lat['mahala']['median_ms']:.2f} ms (p90 {lat['mahala']['p90_ms']:.2f}); target < 5 ms"
    )


if __name__ == "__main__":
    main()
