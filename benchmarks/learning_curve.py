"""Learning curve on the toy factory: test AUC against the number of training clips per machine type.

One toy-factory data set (seed 0; ``--machines``, each with ``--sections`` sections of
``max(--sizes)`` normal training clips and ``--test`` test clips, half anomalous, half target
domain) is written once. For each size n, every system is trained on the first n training clips
of each section of each machine type (file-name order, about 10 % of them target domain as in
the data set, so the sets are nested) and scores the same test clips: AUC and pAUC per machine type
(DCASE definitions), their mean, training seconds and scoring ms per clip. A joint system
(`System.joint`, e.g. aux_classifier) is fitted once over all machine types, the others once per
type. Systems are the names of ``bench_ablation.py`` (same configs); the AE's MSE and MAHALA
share one training. Thresholds are fitted in-sample: AUCs do not depend on them.

    python benchmarks/learning_curve.py --sizes 5 10 20 50 100 --systems dcase_ae_mse dcase_ae_mahala aux_stgram --out runs/lc

Writes ``<out>/learning_curve.json`` and prints (and writes) a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, bench_context, provenance  # noqa: E402
from bench_ablation import SYSTEMS  # noqa: E402

from stethoscope.config import read_config  # noqa: E402
from stethoscope.data.layouts import scan  # noqa: E402
from stethoscope.data.toy_factory import make_toy_dataset  # noqa: E402
from stethoscope.evaluation.metrics import auc, pauc  # noqa: E402
from stethoscope.systems import get_system  # noqa: E402


def build(name: str, mode: str | None = None, epochs: int | None = None) -> Any:
    """The system ``name`` of the benchmark table, unfitted, with an in-sample threshold."""
    system, config, overrides = SYSTEMS[name]
    params = {
        **(read_config(config) if config else {}),
        **overrides,
        **({"epochs": epochs} if epochs else {}),
    }
    params.pop("base", None)
    params.pop("score_mode", None)
    if mode is not None:
        params["score_mode"] = mode
    if "threshold_fit" in get_system(system).get_params():
        params["threshold_fit"] = "in_sample"
    return get_system(system, **params)


def score_types(
    fitted: dict[str, Any], tests: dict[str, list], ctx: Any, mode: str | None = None
) -> dict[str, Any]:
    """Each type's fitted system scores its test clips (in score mode ``mode`` if given):
    AUC and pAUC per type, their means, and scoring ms per clip (mean over types)."""
    per_type, ms = {}, []
    for machine, clips in tests.items():
        system = fitted[machine]
        if mode is not None:
            system.score_mode = mode
        t0 = time.perf_counter()
        scores = system.score(clips, ctx)
        ms.append(1000 * (time.perf_counter() - t0) / len(clips))
        y = [c.label for c in clips]
        per_type[machine] = {"auc": auc(y, scores), "pauc": pauc(y, scores)}
    return {
        "per_type": per_type,
        "score_ms_per_clip": float(np.mean(ms)),
        "mean_auc": float(np.mean([v["auc"] for v in per_type.values()])),
        "mean_pauc": float(np.mean([v["pauc"] for v in per_type.values()])),
    }


def run_size(
    groups: dict[str, list],
    tests: dict[str, list],
    names: list[str],
    seed: int,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Fit every system in ``names`` on ``groups`` and score ``tests``; results per name."""
    out: dict[str, Any] = {}
    done: set[str] = set()
    for name in names:
        if name in done:
            continue
        stem, _, mode = name.rpartition("_")
        # the AE's and GammaVAE's MSE and MAHALA: one training, both scores
        modes = (
            {n: n.rpartition("_")[2] for n in names if n.rpartition("_")[0] == stem}
            if mode in ("mse", "mahala")
            else {name: None}
        )
        first_mode = next(iter(modes.values()))
        ctx = bench_context(cache_dir=None, seed=seed)
        proto = build(name, first_mode, epochs)
        t0 = time.perf_counter()
        if proto.joint:
            fitted = proto.fit_joint(groups, ctx=ctx)
        else:
            fitted = {
                m: build(name, first_mode, epochs).fit(clips, ctx=ctx)
                for m, clips in groups.items()
            }
        train_s = time.perf_counter() - t0
        for label, mode in modes.items():
            out[label] = {**score_types(fitted, tests, ctx, mode), "train_seconds": train_s}
            done.add(label)
            print(
                f"  {label}: mean AUC {out[label]['mean_auc']:.3f}, train {train_s:.0f} s",
                file=sys.stderr,
            )
    return out


def first(clips: list, machine: str, n: int) -> list:
    """The first n training clips of each section of ``machine`` in file-name order, with the toy
    factory's domain proportions (about 10 % target, at least one from two clips on), so that
    every size trains on both domains as the test clips are."""
    n_target = max(1, round(0.1 * n)) if n >= 2 else 0
    chosen = []
    for section in sorted({c.section for c in clips if c.machine == machine}):
        train = [
            c for c in clips if c.machine == machine and c.section == section and c.split == "train"
        ]
        target = [c for c in train if c.domain == "target"][:n_target]
        chosen += [c for c in train if c.domain != "target"][: n - len(target)] + target
    return chosen


def table(results: dict[int, dict[str, Any]], names: list[str]) -> str:
    sizes = sorted(results)
    lines = [
        "| system | " + " | ".join(f"n={n}" for n in sizes) + " |",
        "|" + " --- |" * (len(sizes) + 1),
    ]
    for name in names:
        cells = [
            f"{results[n][name]['mean_auc']:.3f}" if name in results[n] else "-" for n in sizes
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Training seconds (all machine types) / scoring ms per clip:",
        "",
        "| system | " + " | ".join(f"n={n}" for n in sizes) + " |",
        "|" + " --- |" * (len(sizes) + 1),
    ]
    for name in names:
        cells = [
            f"{results[n][name]['train_seconds']:.0f} / {results[n][name]['score_ms_per_clip']:.0f}"
            if name in results[n]
            else "-"
            for n in sizes
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument(
        "--test", type=int, default=40, help="test clips per machine type (half anomalous)"
    )
    parser.add_argument("--machines", nargs="+", default=["fan", "gearbox", "pump"])
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["00"],
        help="toy sections per machine type (each sounds different: classes for aux_classifier)",
    )
    parser.add_argument(
        "--systems", nargs="+", required=True, choices=list(SYSTEMS), metavar="NAME"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed (the data is always seed 0)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, help="override every system's epochs (smoke runs)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "STETHOSCOPE_WEIGHTS_DIR" not in os.environ and (SHARED / "weights").is_dir():
        os.environ["STETHOSCOPE_WEIGHTS_DIR"] = str(SHARED / "weights")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_dataset(
            Path(tmp) / "toy",
            machines=args.machines,
            n_train=max(args.sizes),
            n_test=args.test,
            seconds=args.seconds,
            seed=0,
            sections=args.sections,
        )
        clips = sorted(scan(root), key=lambda c: str(c.path))
        tests = {
            m: [c for c in clips if c.machine == m and c.split == "test"] for m in args.machines
        }
        for n in sorted(args.sizes):
            print(f"== {n} training clips per machine type", file=sys.stderr)
            groups = {m: first(clips, m, n) for m in args.machines}
            results[n] = run_size(groups, tests, args.systems, args.seed, args.epochs)
            (out / "learning_curve.json").write_text(
                json.dumps({str(k): v for k, v in results.items()}, indent=1)
            )
    text = (
        "\n".join(
            [
                f"Mean test AUC over {', '.join(args.machines)} ({len(args.sections)} section(s), "
                f"{args.test} test clips per section; n = training clips per section):",
                "",
                table(results, args.systems),
                "",
                provenance(),
            ]
        )
        + "\n"
    )
    (out / "learning_curve.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
