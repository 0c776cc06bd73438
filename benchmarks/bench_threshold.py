"""False alarms of in-sample vs cross-fitted thresholds on the shared real clips.

Protocol (that of ``stethoscope bench``, `evaluation.crossval`): every machine type of each
data set with at least ``--min-normals`` normal clips is one set; its normals are split into
``--folds`` folds (`normal_folds`). Fold k fits the system on the other normals (seed
``seed + k``) and sets its threshold both ways:

* in_sample: the gamma fit (90th percentile) of the fitted model's scores of its own training
  clips, as the DCASE baselines do (``threshold_fit: in_sample``);
* crossfit: the gamma fit of held-out scores from ``--threshold-folds`` copies, each trained
  on the other training folds (`System.crossfit_models`, what ``fit`` does by default; the
  tests check that the two agree); embedding_knn refits only its detector, through ``fit``.

Then the fold's normals (never trained on) and every anomaly are scored. Reported per system
and data set: the false-alarm rate (held-out normals above the threshold, pooled over folds,
so each normal counts once; about 1 - 0.9 = 10 % is what the percentile promises), the
detection rate (anomalies above the threshold, pooled over folds) and the median ratio of
the two thresholds. MSE and MAHALA scores share each fold's models.

Systems run in ``--jobs`` worker processes with one torch thread each; features and
embeddings are cached in ``--cache`` (a temporary folder by default).

    PYTHONPATH=src python benchmarks/bench_threshold.py [--epochs 30] [--folds 3] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_context, provenance, table  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "mn04_as_mAP_432.pt"
# job -> (system, hyperparameters (epochs added for trainable ones), score modes or detectors)
JOBS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "dcase_ae": ("dcase_ae", {}, ("mse", "mahala")),
    "gamma_vae": ("gamma_vae", {}, ("mse", "mahala")),
    "embedding_knn": ("embedding_knn", {"encoder": "efficientat_mn04"}, ("knn", "gmm")),
}


def sets(data: list[Path], min_normals: int) -> dict[tuple[str, str], list]:
    """(data set, machine type) -> labelled clips, for types with enough normals."""
    from stethoscope.data.layouts import scan
    from stethoscope.evaluation.crossval import group_sets

    out = {}
    for root in data:
        for machine, clips in group_sets(scan(root)).items():
            if sum(c.label == 0 for c in clips) >= min_normals and any(c.label == 1 for c in clips):
                out[(root.name, machine)] = clips
    return out


def run_job(job: str, data: list[Path], args: argparse.Namespace) -> tuple[str, list[dict], float]:
    """One system on every set: a row per (variant, set, fold) with the counts above each threshold."""
    import torch

    from stethoscope.evaluation.crossval import normal_folds
    from stethoscope.systems import get_system
    from stethoscope.systems.threshold import crossfit_folds, gamma_threshold

    torch.set_num_threads(1)
    name, params, variants = JOBS[job]
    if name != "embedding_knn":
        params = {**params, "epochs": args.epochs}
    started = time.perf_counter()
    rows = []
    for (source, machine), clips in sets(data, args.min_normals).items():
        normals = [c for c in clips if c.label == 0]
        anomalies = [c for c in clips if c.label == 1]
        for k, test_idx in enumerate(normal_folds(normals, args.folds, args.seed)):
            train = [c for i, c in enumerate(normals) if i not in set(test_idx.tolist())]
            test = [normals[i] for i in test_idx]
            ctx = bench_context(args.cache, seed=args.seed + k)
            ctx = ctx.replace(weights_dirs=(WEIGHTS.parent,))
            thresholds: dict[str, tuple[float, float]] = {}
            fitted = {}
            if name == "embedding_knn":  # the library's own fit, both ways (embeddings are cached)
                for det in variants:
                    system = get_system(
                        name, **params, detector=det, threshold_folds=args.threshold_folds
                    ).fit(train, ctx=ctx)
                    thresholds[det] = (
                        system.run_["threshold"]["in_sample_threshold"],
                        system.threshold_,
                    )
                    fitted[det] = system
            else:
                final = get_system(
                    name, **params, threshold_fit="in_sample", threshold_folds=args.threshold_folds
                ).fit(train, ctx=ctx)
                folds = crossfit_folds(
                    len(train),
                    args.threshold_folds,
                    ctx.seed,
                    groups=[c.domain or "none" for c in train],
                )
                copies = list(final.crossfit_models(train, folds, ctx))
                for mode in variants:
                    heldout = np.zeros(len(train))
                    for held, copy, copy_ctx in copies:
                        copy.score_mode = mode
                        heldout[held] = copy.score([train[i] for i in held], copy_ctx)
                    final.score_mode = mode
                    thresholds[mode] = (
                        gamma_threshold(final.score(train, ctx)),
                        gamma_threshold(heldout),
                    )
                    fitted[mode] = final
            for variant, (in_sample, crossfit) in thresholds.items():
                system = fitted[variant]
                if name != "embedding_knn":
                    system.score_mode = variant
                normal, anomaly = system.score(test, ctx), system.score(anomalies, ctx)
                rows.append(
                    {
                        "system": f"{name} {variant}",
                        "source": source,
                        "machine": machine,
                        "fold": k,
                        "n_normal": len(normal),
                        "n_anomaly": len(anomaly),
                        "in_sample": in_sample,
                        "crossfit": crossfit,
                        "fa_in_sample": int((normal > in_sample).sum()),
                        "fa_crossfit": int((normal > crossfit).sum()),
                        "det_in_sample": int((anomaly > in_sample).sum()),
                        "det_crossfit": int((anomaly > crossfit).sum()),
                    }
                )
        print(
            f"[{job}] {source}/{machine} done ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return job, rows, time.perf_counter() - started


def summary(rows: list[dict], seconds: dict[str, float]) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["system"], r["source"])].append(r)
    out = []
    for (system, source), rs in sorted(groups.items()):
        n = sum(r["n_normal"] for r in rs)
        a = sum(r["n_anomaly"] for r in rs)

        def pct(key: str, total: int, rs: list[dict] = rs) -> str:
            return f"{100 * sum(r[key] for r in rs) / total:.0f}%"

        ratio = float(np.median([r["crossfit"] / r["in_sample"] for r in rs]))
        out.append(
            [
                system,
                source,
                len({r["machine"] for r in rs}),
                n,
                pct("fa_in_sample", n),
                pct("fa_crossfit", n),
                pct("det_in_sample", a),
                pct("det_crossfit", a),
                f"{ratio:.2f}",
                f"{seconds[system.split()[0]]:.0f}",
            ]
        )
    return table(
        [
            "system",
            "data",
            "types",
            "held-out normals",
            "false alarms in_sample",
            "false alarms crossfit",
            "detected in_sample",
            "detected crossfit",
            "threshold ratio (median)",
            "job s",
        ],
        out,
    )


def per_set(rows: list[dict]) -> str:
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["system"], r["source"], r["machine"])].append(r)
    out = [
        [
            s,
            f"{src}/{m}",
            f"{sum(r['fa_in_sample'] for r in rs)}/{sum(r['n_normal'] for r in rs)}",
            f"{sum(r['fa_crossfit'] for r in rs)}/{sum(r['n_normal'] for r in rs)}",
            f"{sum(r['det_in_sample'] for r in rs)}/{sum(r['n_anomaly'] for r in rs)}",
            f"{sum(r['det_crossfit'] for r in rs)}/{sum(r['n_anomaly'] for r in rs)}",
        ]
        for (s, src, m), rs in sorted(groups.items())
    ]
    return table(
        [
            "system",
            "set",
            "false alarms in_sample",
            "false alarms crossfit",
            "detected in_sample",
            "detected crossfit",
        ],
        out,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", nargs="+", type=Path, default=[REAL / "dcase2020", REAL / "mimii_0db"]
    )
    parser.add_argument(
        "--systems",
        nargs="+",
        default=list(JOBS),
        choices=list(JOBS),
        metavar="JOB",
        help=f"systems to run (default all: {', '.join(JOBS)})",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="training epochs of the trainable systems (default 30)",
    )
    parser.add_argument(
        "--folds", type=int, default=3, help="outer folds over each set's normals (default 3)"
    )
    parser.add_argument(
        "--threshold-folds", type=int, default=4, help="K of the cross-fitted threshold (default 4)"
    )
    parser.add_argument(
        "--min-normals", type=int, default=6, help="sets with fewer normal clips are left out"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes, one torch thread each (default 2)"
    )
    parser.add_argument(
        "--cache", type=Path, help="feature / embedding cache (default: a temporary folder)"
    )
    parser.add_argument(
        "--per-set", action="store_true", help="also print a table per machine type"
    )
    args = parser.parse_args()
    missing = [str(d) for d in args.data if not d.is_dir()]
    if missing:
        sys.exit(f"data not found: {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        args.cache = args.cache or Path(tmp) / "cache"
        started = time.perf_counter()
        rows, seconds = [], {}
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=spawn) as pool:
            for job, job_rows, job_seconds in pool.map(
                run_job, args.systems, [args.data] * len(args.systems), [args] * len(args.systems)
            ):
                rows += job_rows
                seconds[JOBS[job][0]] = job_seconds
    print(provenance())
    print(
        f"protocol: {args.folds} outer folds over each type's normals (types with >= {args.min_normals} normals), "
        f"{args.epochs} epochs, crossfit K = {args.threshold_folds}, percentile 0.9, seed {args.seed}; "
        f"{args.jobs} worker processes x 1 torch thread; wall {time.perf_counter() - started:.0f} s\n"
    )
    print(summary(rows, seconds))
    if args.per_set:
        print()
        print(per_set(rows))


if __name__ == "__main__":
    main()
