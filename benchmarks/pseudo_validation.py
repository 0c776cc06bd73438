"""Do pseudo-anomalies predict real ones? Pseudo AUC against real AUC across systems, per set.

For every set (machine type) of every data folder and every system, the pseudo AUC is measured
from the set's normal clips alone (`evaluation.pseudo.pseudo_validate`: 3 folds, every kind and
severity). The real AUC is read from an earlier ``stethoscope bench --system ...`` run of the same
systems on the same data (``--bench DIR``: ``DIR/<data name>/<system folder>/bench.json``). Then:

* Spearman's rank correlation between pseudo and real AUC across the systems, per set;
* the system a pseudo-AUC pick would choose per set, its real AUC, against the best, the worst
  and the mean single system's real AUC on that set.

    python benchmarks/pseudo_validation.py --bench runs/cmp --out runs/pseudo \\
        --systems mel_stats dcase_ae@mahala embedding_knn tldiffgan@cpu

Writes ``<out>/pseudo.json`` as it goes (a rerun skips what it holds) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, bench_context  # noqa: E402

from stethoscope.data.layouts import scan  # noqa: E402
from stethoscope.evaluation.crossval import group_sets  # noqa: E402
from stethoscope.evaluation.pseudo import pseudo_validate  # noqa: E402
from stethoscope.fsutil import atomic_write_json  # noqa: E402
from stethoscope.workflows.bench import system_specs  # noqa: E402


def measure(args: argparse.Namespace) -> dict[str, Any]:
    path = args.out / "pseudo.json"
    done: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    ctx = bench_context(cache_dir=args.out / ".cache")
    specs = system_specs(",".join(args.systems))
    for data in map(Path, args.data):
        for set_name, clips in group_sets(scan(data)).items():
            normals = [c for c in clips if c.label == 0]
            for spec in specs:
                key = f"{data.name}/{set_name}/{spec.label}"
                if key in done or len(normals) < 3:
                    continue
                res = pseudo_validate(spec.build, normals, ctx)
                done[key] = {"auc": res["auc"], "per_kind": res["per_kind"], "folds": res["folds"]}
                atomic_write_json(path, done)
                print(f"{key:<48} pseudo AUC {res['auc']:.3f}", file=sys.stderr)
    return done


def analyse(args: argparse.Namespace, pseudo: dict[str, Any]) -> None:
    labels = [s.label for s in system_specs(",".join(args.systems))]
    folders = {s.label: s.folder for s in system_specs(",".join(args.systems))}
    rows, summary = [], {}
    for data in map(Path, args.data):
        real = {
            lab: json.loads((args.bench / data.name / folders[lab] / "bench.json").read_text())[
                "sets"
            ]
            for lab in labels
        }
        rhos, picked, best, worst, mean = [], [], [], [], []
        for set_name in real[labels[0]]:
            keys = [f"{data.name}/{set_name}/{lab}" for lab in labels]
            if not all(k in pseudo for k in keys):
                continue
            p = np.array([pseudo[k]["auc"] for k in keys])
            r = np.array([real[lab][set_name]["auc"] for lab in labels])
            rho = (
                float(scipy.stats.spearmanr(p, r).statistic)
                if np.ptp(p) > 0 and np.ptp(r) > 0
                else float("nan")
            )
            pick = int(np.argmax(p))
            rhos.append(rho)
            (
                picked.append(r[pick]),
                best.append(r.max()),
                worst.append(r.min()),
                mean.append(r.mean()),
            )
            rows.append(
                f"| {data.name} | {set_name} | "
                + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(p, r))
                + f" | {rho:+.2f} | {labels[pick]} |"
            )
        summary[data.name] = (
            np.nanmean(rhos),
            np.mean(picked),
            np.mean(best),
            np.mean(worst),
            np.mean(mean),
        )
    print(
        "| data | set | "
        + " | ".join(f"{lab} pseudo / real" for lab in labels)
        + " | Spearman rho | pick |"
    )
    print("| --- | --- |" + " --- |" * (len(labels) + 2))
    print("\n".join(rows))
    print(
        "\n| data | mean rho | real AUC of the pick | best system per set | worst per set | mean of systems |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (rho, pick, hi, lo, avg) in summary.items():
        print(f"| {name} | {rho:+.2f} | {pick:.3f} | {hi:.3f} | {lo:.3f} | {avg:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--systems", nargs="+", required=True, help="as bench --system: name or name@variant"
    )
    parser.add_argument(
        "--bench", type=Path, required=True, help="folder of bench runs: <data name>/<system>/"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--data",
        nargs="+",
        default=[str(SHARED / "data/real/dcase2020"), str(SHARED / "data/real/mimii_0db")],
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    analyse(args, measure(args))


if __name__ == "__main__":
    main()
