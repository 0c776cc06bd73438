"""The choices of `mel_stats` under the `bench` protocol on the real sets: which statistics,
modulation features, which detector, which log floor. Every variant named here is reported,
the packaged default included, so that the choice of the default can be judged with its
selection bias in view (docs/mel_stats.md).

    python benchmarks/mel_stats_variants.py --out runs/mel_stats_variants

Writes ``<out>/<data>/<variant>/bench.json`` and prints a Markdown table of mean AUC and pAUC
per data set and their mean.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, bench_context  # noqa: E402

from stethoscope.config import load_config  # noqa: E402
from stethoscope.data.layouts import scan  # noqa: E402
from stethoscope.workflows.bench import SystemSpec, bench  # noqa: E402

DEFAULT = ["mean", "std", "p10", "p90", "max"]
VARIANTS: dict[str, dict[str, Any]] = {
    "default (mean, std, p10, p90, max)": {},
    "mean, std": {"stats": ["mean", "std"]},
    "all nine percentiles and moments": {
        "stats": ["mean", "std", "min", "p10", "p25", "p50", "p75", "p90", "max"]
    },
    "default + dstd": {"stats": DEFAULT + ["dstd"]},
    "mean, std, dstd": {"stats": ["mean", "std", "dstd"]},
    "default + modulation (8 bands)": {"modulation_bands": 8},
    "default, kNN (k=2)": {"detector": "knn"},
    "default, GMM (1 diagonal component)": {"detector": "gmm"},
    "default, 2020 log floor (add)": {"log_floor": "add"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--data",
        nargs="+",
        default=[str(SHARED / "data/real/dcase2020"), str(SHARED / "data/real/mimii_0db")],
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="names from VARIANTS")
    args = parser.parse_args()
    ctx = bench_context(cache_dir=args.out / ".cache")
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for data in map(Path, args.data):
        clips = scan(data)
        for name in args.variants:
            spec = SystemSpec("mel_stats", {**load_config("mel_stats"), **VARIANTS[name]}, name)
            rep = bench(
                clips, spec, args.out / data.name / spec.folder, ctx, meta={"data": str(data)}
            )[None]
            table.setdefault(name, {})[data.name] = (rep["mean_auc"], rep["mean_pauc"])
            print(
                f"{data.name:<12} {name:<40} AUC {rep['mean_auc']:.3f}  pAUC {rep['mean_pauc']:.3f}",
                file=sys.stderr,
            )
    names = [Path(d).name for d in args.data]
    print("| variant | " + " | ".join(f"{n} AUC | {n} pAUC" for n in names) + " | mean AUC |")
    print("| --- |" + " --- | --- |" * len(names) + " --- |")
    for name, row in table.items():
        cells = " | ".join(f"{row[n][0]:.3f} | {row[n][1]:.3f}" for n in names)
        print(f"| {name} | {cells} | {sum(row[n][0] for n in names) / len(names):.3f} |")


if __name__ == "__main__":
    main()
