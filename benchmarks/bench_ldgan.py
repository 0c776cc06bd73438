"""LDGAN on toy-factory data: speed, memory, detection and anomaly-map localisation.

For the full model and each ablation (no latent diffusion, no TMixup), per toy machine:
training seconds per epoch, scoring ms per clip, AUC, mean score of normal vs anomalous test
clips, and localisation: the share of an anomalous clip's anomaly-map energy that falls
inside its injected fault region (``fault_regions.csv``: t0, t1 in s, f0, f1 in Hz) divided by
that region's share of the map's area ("lift": 1 = no better than uniform). Hz become mel bins
by the Slaney mel scale of `features.logmel` (a bin belongs to the region when its centre
frequency lies in [f0, f1]; for bands narrower than a bin, the nearest bin), seconds become
frames at hop 512 / 16 kHz (frame k is centred at k * 512 / 16000 s).

    python benchmarks/bench_ldgan.py [--config ldgan_cpu] [--machines fan gearbox] [--epochs N]

Training and scoring read features from a cache under the data folder, warmed before any
timing, so that timings are the model's. Prints a Markdown table, the command and the
machine. Timings depend on machine load.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_context, peak_rss_mb, provenance, table  # noqa: E402

from stethoscope.config import read_config  # noqa: E402
from stethoscope.data.layouts import scan  # noqa: E402
from stethoscope.data.toy_factory import make_toy_dataset  # noqa: E402
from stethoscope.engine import RunContext  # noqa: E402
from stethoscope.features.extract import logmels  # noqa: E402
from stethoscope.features.logmel import LogMelParams, _hz_to_mel, _mel_to_hz  # noqa: E402
from stethoscope.systems import get_system  # noqa: E402

VARIANTS = {
    "full": {},
    "no latent diffusion": {"latent_diffusion": False},
    "no TMixup": {"tmixup": False},
}


def region_mask(
    n_mels: int,
    frames: int,
    t0: float,
    t1: float,
    f0: float,
    f1: float,
    params: LogMelParams = LogMelParams(),
) -> np.ndarray:
    """Boolean (n_mels, frames): the time-frequency box of a fault on the log-mel grid."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(params.sample_rate / 2), n_mels + 2))
    centres = edges[1:-1]
    bins = (centres >= f0) & (centres <= f1)
    if not bins.any():
        bins[np.argmin(np.abs(centres - 0.5 * (f0 + f1)))] = True
    times = np.arange(frames) * params.hop_length / params.sample_rate
    cols = (times >= t0) & (times <= t1)
    return bins[:, None] & cols[None, :]


def fault_regions(machine_dir: Path) -> dict[str, tuple[float, float, float, float]]:
    with open(machine_dir / "fault_regions.csv", newline="") as handle:
        return {
            Path(r["file"]).name: (float(r["t0"]), float(r["t1"]), float(r["f0"]), float(r["f1"]))
            for r in csv.DictReader(handle)
        }


def run_variant(machine_dir: Path, clips: list, params: dict, ctx: RunContext) -> dict[str, float]:
    train = [c for c in clips if c.split == "train"]
    test = [c for c in clips if c.split == "test"]
    system = get_system("ldgan", **params)
    # warm the feature cache so that timings are the model's
    logmels(train + test, system.branch.logmel_params, ctx.cache_dir, progress=False)
    start = time.perf_counter()
    system.fit(train, ctx=ctx)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = system.score(test, ctx)
    score_ms = 1000 * (time.perf_counter() - start) / len(test)
    labels = np.array([c.label for c in test])
    regions = fault_regions(machine_dir)
    lifts, fractions, shares = [], [], []
    for clip in test:
        if clip.label != 1 or clip.name not in regions:
            continue
        amap = system.anomaly_map(clip, ctx)
        mask = region_mask(amap.shape[0], amap.shape[1], *regions[clip.name])
        fraction, share = amap[mask].sum() / amap.sum(), mask.mean()
        fractions.append(fraction)
        shares.append(share)
        lifts.append(fraction / share)
    return {
        "s/epoch": fit_s / max(params["epochs"], 1),
        "ms/clip": score_ms,
        "AUC": roc_auc_score(labels, scores),
        "normal": scores[labels == 0].mean(),
        "anomalous": scores[labels == 1].mean(),
        "energy in region": float(np.mean(fractions)),
        "area share": float(np.mean(shares)),
        "lift": float(np.mean(lifts)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ldgan_cpu", help="packaged config name or YAML file")
    parser.add_argument("--machines", nargs="+", default=["fan", "gearbox"])
    parser.add_argument("--n-train", type=int, default=20)
    parser.add_argument("--n-test", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded machine)"
    )
    parser.add_argument("--root", default=None, help="toy data folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = read_config(args.config)
    if args.epochs is not None:
        params["epochs"] = args.epochs
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        ctx = bench_context(cache_dir=root / ".cache")
        make_toy_dataset(
            root, machines=tuple(args.machines), n_train=args.n_train, n_test=args.n_test, seed=0
        )
        rows = []
        for machine in args.machines:
            clips = scan(root, machine=machine)
            for variant, switch in VARIANTS.items():
                rows.append(
                    (
                        machine,
                        variant,
                        run_variant(root / machine, clips, {**params, **switch}, ctx),
                    )
                )
    peak_mb = peak_rss_mb()
    keys = list(rows[0][2])
    print(
        table(
            ["machine", "variant", *keys],
            [
                [machine, variant, *(float(result[k]) for k in keys)]
                for machine, variant, result in rows
            ],
        )
    )
    print(
        f"\npeak RSS {peak_mb:.0f} MB; config {args.config} (epochs {params['epochs']}), "
        f"{args.n_train} train / {args.n_test} test clips per machine, torch threads {args.threads}"
    )
    print(provenance())


if __name__ == "__main__":
    main()
