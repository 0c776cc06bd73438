"""Markdown tables of ``stethoscope bench --system a,b,c`` folders, for docs/RESULTS.md.

    python benchmarks/comparison_table.py runs/cmp/dcase2020 runs/cmp/mimii_0db [--versus mel_stats]
    python benchmarks/comparison_table.py --pair runs/abl/dcase2020/bench.json runs/cmp/dcase2020/tldiffgan_cpu/bench.json

Per folder: each system's mean AUC with its bootstrap interval, mean pAUC, training seconds per
fold and scoring ms per clip (as bench measured them: see the caveat on the machine's load in
RESULTS), then each system's paired difference against ``--versus``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def tables(folder: Path, versus: str | None) -> str:
    comparison = json.loads((folder / "comparison.json").read_text())
    lines = [
        f"**{folder.name}** ({len(comparison['compared_sets'])} sets; {comparison['n_boot']} paired bootstrap "
        "replicates)",
        "",
        "| system | mean AUC [95 % CI] | mean pAUC | train s / fold | score ms / clip |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, sub in comparison["folders"].items():
        bench = json.loads((folder / sub / "bench.json").read_text())
        sets = bench["sets"].values()
        train = sum(s["train_seconds"] for s in sets) / len(sets)
        score = sum(s["score_ms_per_clip"] for s in sets) / len(sets)
        m = comparison["mean_auc"][label]
        lines.append(
            f"| {label} | {m['auc']:.3f} [{m['low']:.3f}, {m['high']:.3f}] | {bench['mean_pauc']:.3f} | "
            f"{train:.1f} | {score:.1f} |"
        )
    if versus:
        lines += [
            "",
            f"| difference vs {versus} | AUC [95 % CI] | verdict |",
            "| --- | --- | --- |",
        ]
        for p in comparison["pairs"]:
            if versus not in (p["a"], p["b"]):
                continue
            sign = 1 if p["a"] == versus else -1
            other = p["b"] if p["a"] == versus else p["a"]
            lo, hi = sorted((sign * p["low"], sign * p["high"]))
            verdict = (
                "within noise"
                if p["within_noise"]
                else (f"{versus} better" if sign * p["diff"] > 0 else f"{other} better")
            )
            lines.append(
                f"| {versus} − {other} | {sign * p['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def pair(first: Path, second: Path) -> str:
    """The paired comparison of two single-system bench.json files run on the same folds (two
    separate `bench` runs with the same data, seed and fold count)."""
    from stethoscope.evaluation.compare import paired_bootstrap

    reports = {}
    for path in (first, second):
        bench = json.loads(path.read_text())
        reports[bench.get("label") or bench["system"]] = bench
    out = paired_bootstrap(reports)
    (p,) = out["pairs"]
    means = " · ".join(
        f"{k} {m['auc']:.3f} [{m['low']:.3f}, {m['high']:.3f}]" for k, m in out["mean_auc"].items()
    )
    verdict = (
        "within noise"
        if p["within_noise"]
        else ("first better" if p["diff"] > 0 else "second better")
    )
    return f"{means} · {p['a']} − {p['b']}: {p['diff']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}] {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--versus", default="mel_stats")
    parser.add_argument(
        "--pair", nargs=2, type=Path, metavar="BENCH_JSON", help="compare two bench.json files"
    )
    args = parser.parse_args()
    if args.pair:
        print(pair(*args.pair))
    print("\n".join(tables(f, args.versus) for f in args.folders))


if __name__ == "__main__":
    main()
