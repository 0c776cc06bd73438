"""How hard is the toy factory? AUCs of a simple detector and the DCASE AE on generated data.

Detector 1: per-clip mean and std of the DCASE log-mel over time (256 dims), standardised on
the training normals, mean distance to the 2 nearest training normals. Detector 2: the DCASE
AE system (MSE score), 20 epochs. AUC over all test clips; AUC-s / AUC-t use source / target
normals with all anomalies (DCASE 2022+); pAUC at max FPR 0.1. Both detectors share one
feature cache in the temporary folder; one torch thread.

    python benchmarks/toy_factory_auc.py [--machines fan,gearbox,pump] [--n-train 40] [--n-test 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_context, provenance  # noqa: E402

from stethoscope.data import make_toy_dataset, scan  # noqa: E402
from stethoscope.features.extract import logmels  # noqa: E402
from stethoscope.systems import get_system  # noqa: E402


def knn_scores(train, test, cache: Path) -> np.ndarray:
    def feats(clips):
        return np.stack(
            [
                np.concatenate([m.mean(1), m.std(1)])
                for m in logmels(clips, cache_dir=cache, progress=False)
            ]
        )

    x_train, x_test = feats(train), feats(test)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    nn = NearestNeighbors(n_neighbors=2).fit((x_train - mu) / sd)
    return nn.kneighbors((x_test - mu) / sd)[0].mean(1)


def aucs(test, scores: np.ndarray) -> tuple[float, float, float, float]:
    y = np.array([c.label for c in test])
    dom = np.array([c.domain for c in test])
    src, tgt = (dom == "source") | (y == 1), (dom == "target") | (y == 1)
    return (
        roc_auc_score(y, scores),
        roc_auc_score(y[src], scores[src]),
        roc_auc_score(y[tgt], scores[tgt]),
        roc_auc_score(y, scores, max_fpr=0.1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", default="fan,gearbox,pump")
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-test", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--no-ae", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    machines = args.machines.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_dataset(
            Path(tmp) / "toy",
            machines=machines,
            n_train=args.n_train,
            n_test=args.n_test,
            seed=args.seed,
        )
        ctx = bench_context(cache_dir=Path(tmp) / "c", seed=args.seed)
        for machine in machines:
            train, test = (
                scan(root, machine=machine, split="train"),
                scan(root, machine=machine, split="test"),
            )
            rows.append(
                (
                    machine,
                    "log-mel mean/std + 2-NN",
                    *aucs(test, knn_scores(train, test, ctx.cache_dir)),
                )
            )
            if not args.no_ae:
                system = get_system("dcase_ae", epochs=args.epochs).fit(train, ctx=ctx)
                rows.append(
                    (
                        machine,
                        f"DCASE AE, MSE, {args.epochs} epochs",
                        *aucs(test, system.score(test, ctx)),
                    )
                )
    print(provenance())
    print(f"seed {args.seed}, {args.n_train} train / {args.n_test} test clips per machine\n")
    print("| machine | detector | AUC | AUC-s | AUC-t | pAUC |")
    print("| --- | --- | --- | --- | --- | --- |")
    for machine, name, *vals in rows:
        print(f"| {machine} | {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
