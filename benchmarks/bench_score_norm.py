"""Score normalisation per section and domain (``score_norm``): AUC over a machine type's pooled
sections, false alarms and detections at the system's own (cross-fitted) threshold, with and
without it.

Per set (a machine type, every section pooled: where normalisation matters), the `bench`
protocol (5 folds over the normals) with each fold's system fitting its threshold as configured
(``own_threshold``), for ``score_norm`` none, section and section_domain.

    python benchmarks/bench_score_norm.py --out runs/score_norm

Data: a toy-factory set with three sections per machine type (20 train + 20 test clips per
section; generated into ``<out>/toy``) and the real dcase2020 set (sections = machine IDs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, bench_context  # noqa: E402

from stethoscope.config import load_config  # noqa: E402
from stethoscope.data.layouts import scan  # noqa: E402
from stethoscope.data.toy_factory import make_toy_dataset  # noqa: E402
from stethoscope.evaluation.crossval import cross_validate, group_sets  # noqa: E402
from stethoscope.systems import get_system  # noqa: E402

MODES = ("none", "section", "section_domain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--systems", nargs="+", default=["mel_stats", "embedding_knn"])
    args = parser.parse_args()
    toy = args.out / "toy"
    if not (toy / "fan").is_dir():
        make_toy_dataset(
            toy,
            machines=("fan", "gearbox"),
            n_train=20,
            n_test=20,
            seed=0,
            sections=("00", "01", "02"),
        )
    data = {"toy (3 sections)": toy, "dcase2020": SHARED / "data/real/dcase2020"}
    ctx = bench_context(cache_dir=args.out / ".cache")
    print("| data | system | score_norm | mean AUC | false alarms | detected |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, root in data.items():
        sets = group_sets([c for c in scan(root) if c.label is not None])
        for name in args.systems:
            for mode in MODES:
                params = {**load_config(name), "score_norm": mode}
                rows = [
                    cross_validate(
                        clips,
                        lambda: get_system(name, **params),
                        5,
                        ctx,
                        name=s,
                        own_threshold=True,
                    )
                    for s, clips in sets.items()
                ]
                mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
                print(
                    f"| {label} | {name} | {mode} | {mean('auc'):.3f} | {mean('false_alarm'):.3f} | "
                    f"{mean('detected'):.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
