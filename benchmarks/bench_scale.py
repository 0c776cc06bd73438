"""How time and memory grow with the training set: DCASE-sized toy data, one machine type.

For each system (``dcase_ae``, ``gamma_vae``, ``embedding_knn``, ``tldiffgan`` with the CPU
config ``tldiffgan_cpu``) and each training-set size (default 100, 1,000, 3,000 toy-factory
clips of 10 s, about 10 % target domain as in DCASE), in a fresh process each:

* seconds per training epoch (median over ``--epochs``), and the whole fit's seconds (for
  ``embedding_knn``, which has no epochs, the fit: decode + embed + detector);
* scoring throughput, clips/s, with no feature cache (file read + decode + features + model),
  over ``--score-clips`` test clips;
* peak RSS (VmHWM) of the process, and its RSS before fitting (imports).

A least-squares line through the sizes gives time per clip per epoch and memory per clip
(targets: <= 0.25 MB per clip for the frame systems, <= 1 MB for tldiffgan; an AE epoch on
3,000 clips <= 35 s on 2 cores); the full DCASE 2020 AE recipe (6 machine types x 3,000
clips, 100 epochs) is extrapolated from the ``dcase_ae`` line. Features are never cached, so
every fit decodes its clips once (as a first training run does). Thresholds are fitted in
sample (``threshold_fit=in_sample``), so a fit trains one model: the default cross-fitted
threshold trains K more (``threshold_folds``, 4), about K times the fit time. TLDiffGAN and embedding_knn
use the real EfficientAT mn04 weights when found (``$STETHOSCOPE_WEIGHTS_DIR``, else
``../shared/weights``), otherwise a randomly initialised mn04 (same cost), said in the output.

    python benchmarks/bench_scale.py [--sizes 100 1000 3000] [--epochs 2] [--data DIR]
    python benchmarks/bench_scale.py --sizes 8 16 --epochs 1 --score-clips 8 --seconds 2   # smoke run

Prints Markdown (command, machine, date, tables) for docs/RESULTS.md; ``--json`` keeps the raw figures.
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
from _common import (
    bench_context,
    child_json,
    last_line,
    markdown_header,
    peak_rss_mb,
    table,  # noqa: E402
    toy_set,
    use_shared_weights,
)

SYSTEMS = ("dcase_ae", "gamma_vae", "embedding_knn", "tldiffgan")
MB_PER_CLIP_TARGET = {"dcase_ae": 0.25, "gamma_vae": 0.25, "tldiffgan": 1.0}
AE_EPOCH_TARGET_S = 35.0
RECIPE = {
    "types": 6,
    "clips": 3000,
    "epochs": 100,
}  # DCASE 2020 Task 2 AE baseline, full development set


def system_params(name: str, epochs: int, real_weights: bool) -> tuple[dict, str]:
    """Hyperparameters of ``name`` as benchmarked, and a note on its encoder."""
    from stethoscope.config import load_config

    if name == "tldiffgan":
        params = load_config(name, "tldiffgan_cpu", [f"ldgan.epochs={epochs}"])
    elif name == "embedding_knn":
        params = load_config(name)
    else:
        params = {**load_config(name), "epochs": epochs}
    params["threshold_fit"] = (
        "in_sample"  # one model per fit: cross-fitting would add K fold models
    )
    note = ""
    if name in ("tldiffgan", "embedding_knn"):
        if not real_weights:
            params["encoder"] = "random"
        note = "mn04 (real weights)" if real_weights else "mn04 (random weights: real ones absent)"
    return params, note


def pick_train(clips: list, n: int) -> list:
    """``n`` training clips in DCASE proportions: about 10 % target domain (at least one)."""
    train = [c for c in clips if c.split == "train"]
    source = [c for c in train if c.domain == "source"]
    target = [c for c in train if c.domain == "target"]
    k = min(len(target), max(1, round(0.1 * n))) if n >= 2 else 0
    if n - k > len(source):
        raise SystemExit(
            f"the data set has {len(source)} source training clips, {n - k} are needed"
        )
    return source[: n - k] + target[:k]


def epoch_seconds(system) -> list[float]:
    """Per-epoch seconds the engine recorded (empty for systems without epochs)."""
    if hasattr(system, "epoch_seconds_"):
        return list(system.epoch_seconds_)
    branch = getattr(system, "branch", None)
    return [h["seconds"] for h in branch.history_] if branch is not None else []


def one_run(
    data: Path, name: str, n: int, epochs: int, score_clips: int, real_weights: bool, seed: int
) -> dict:
    """Fit on n clips and score ``score_clips`` test clips, no feature cache (in a fresh process)."""
    from stethoscope.data import scan
    from stethoscope.systems import get_system

    clips = scan(data)
    train = pick_train(clips, n)
    test = [c for c in clips if c.split == "test"][:score_clips]
    params, _ = system_params(name, epochs, real_weights)
    system = get_system(name, **params)
    ctx = bench_context(cache_dir=None, seed=seed)
    before = peak_rss_mb()
    start = time.perf_counter()
    system.fit(train, ctx=ctx)
    fit_s = time.perf_counter() - start
    fit_peak = peak_rss_mb()
    system.score(test[:2], ctx)  # warm-up: first-call allocations and lazy imports
    start = time.perf_counter()
    system.score(test, ctx)
    score_s = time.perf_counter() - start
    epochs_s = epoch_seconds(system)
    return {
        "system": name,
        "n": n,
        "fit_s": fit_s,
        "epoch_s": float(np.median(epochs_s)) if epochs_s else None,
        "epochs": len(epochs_s),
        "score_clips_per_s": len(test) / score_s,
        "peak_rss_mb": peak_rss_mb(),
        "fit_peak_rss_mb": fit_peak,
        "rss_before_fit_mb": before,
    }


def line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept (slope 0 through the one point when there is one size)."""
    if len(set(xs)) < 2:
        return 0.0, float(ys[0])
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(slope), float(intercept)


def report(rows: list[dict], notes: dict[str, str], args: argparse.Namespace) -> str:
    out = [
        markdown_header("Scaling with the training set"),
        f"Toy-factory clips of {args.seconds:g} s, one machine type (fan), about 10 % target domain; "
        f"{args.epochs} epoch(s) timed; scoring over {args.score_clips} test clips, no feature cache; "
        f"each size in its own process.\n",
    ]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["system"], r["n"], "failed: " + r["error"], "", "", "", ""])
            continue
        epoch = f"{r['epoch_s']:.2f}" if r["epoch_s"] is not None else "-"
        body.append(
            [
                r["system"] + (f" ({notes[r['system']]})" if notes.get(r["system"]) else ""),
                r["n"],
                f"{r['fit_s']:.1f}",
                epoch,
                f"{r['score_clips_per_s']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['rss_before_fit_mb']:.0f}",
            ]
        )
    out.append(
        table(
            [
                "system",
                "train clips",
                "fit s",
                "s/epoch (median)",
                "score clips/s (uncached)",
                "peak RSS MB",
                "RSS before fit MB",
            ],
            body,
        )
    )
    out.append("\nLines through the sizes (least squares):\n")
    lines, ae = [], None
    for name in dict.fromkeys(r["system"] for r in rows):
        ok = [r for r in rows if r["system"] == name and "error" not in r]
        if not ok:
            continue
        ns = [r["n"] for r in ok]
        mem = line(ns, [r["peak_rss_mb"] for r in ok])
        per_epoch = ok[0]["epoch_s"] is not None
        t = line(ns, [r["epoch_s"] if per_epoch else r["fit_s"] for r in ok])
        target = MB_PER_CLIP_TARGET.get(name)
        verdict = "-" if target is None else ("met" if mem[0] <= target else "**missed**")
        lines.append(
            [
                name,
                f"{1000 * t[0]:.2f} ms/clip per epoch"
                if per_epoch
                else f"{1000 * t[0]:.1f} ms/clip (fit)",
                f"{t[1]:.2f} s",
                f"{mem[0]:.3f}",
                f"{mem[1]:.0f}",
                "-" if target is None else f"<= {target}",
                verdict,
            ]
        )
        if name == "dcase_ae":
            ae = (t, ok)
    out.append(
        table(
            [
                "system",
                "time per clip",
                "time intercept",
                "MB per clip",
                "MB intercept",
                "target MB/clip",
                "memory target",
            ],
            lines,
        )
    )
    if ae is not None:
        out.append("\n" + recipe(*ae))
    return "\n".join(out)


def recipe(t: tuple[float, float], ok: list[dict]) -> str:
    """The DCASE 2020 AE recipe's wall time from the dcase_ae line: per type, 100 epochs on
    3,000 clips plus what a fit does besides its epochs (decode, covariances, threshold)."""
    epoch = t[0] * RECIPE["clips"] + t[1]
    largest = max(ok, key=lambda r: r["n"])
    overhead_per_clip = (largest["fit_s"] - largest["epochs"] * largest["epoch_s"]) / largest["n"]
    per_type = RECIPE["epochs"] * epoch + overhead_per_clip * RECIPE["clips"]
    total = RECIPE["types"] * per_type
    verdict = "met" if epoch <= AE_EPOCH_TARGET_S else "**missed**"
    return (
        f"dcase_ae epoch on {RECIPE['clips']:,} clips: {epoch:.1f} s (target <= {AE_EPOCH_TARGET_S:.0f} s: "
        f"{verdict}). Full DCASE 2020 AE recipe ({RECIPE['types']} machine types x {RECIPE['clips']:,} clips, "
        f"{RECIPE['epochs']} epochs), extrapolated from the line: {per_type / 60:.1f} min per type, "
        f"**{total / 3600:.2f} h** in all (training only; {overhead_per_clip * 1000:.1f} ms/clip of decoding, "
        f"covariances and threshold per fit measured at {largest['n']:,} clips)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100, 1000, 3000], help="training clips"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per fit (default 2)")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument(
        "--score-clips", type=int, default=200, help="test clips scored (default 200)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10)")
    parser.add_argument(
        "--data", type=Path, help="toy set folder, written once and reused (default: temporary)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(
            json.dumps(
                one_run(
                    Path(spec["data"]),
                    spec["system"],
                    spec["n"],
                    spec["epochs"],
                    spec["score_clips"],
                    spec["real_weights"],
                    spec["seed"],
                )
            )
        )
        return
    real_weights = use_shared_weights()
    notes = {s: system_params(s, args.epochs, real_weights)[1] for s in args.systems}
    with tempfile.TemporaryDirectory() as tmp:
        data = toy_set(
            args.data or Path(tmp) / "toy",
            max(args.sizes),
            args.score_clips,
            seconds=args.seconds,
            exact=False,
        )
        rows = []
        for name in args.systems:
            for n in args.sizes:
                spec = {
                    "data": str(data),
                    "system": name,
                    "n": n,
                    "epochs": args.epochs,
                    "score_clips": args.score_clips,
                    "real_weights": real_weights,
                    "seed": args.seed,
                }
                print(f"[{name}] {n} clips", file=sys.stderr)
                try:
                    rows.append(child_json([__file__, "--child", json.dumps(spec)]))
                except (
                    Exception
                ) as err:  # one failed size is reported in its table row, the rest still run
                    rows.append(
                        {
                            "system": name,
                            "n": n,
                            "error": last_line(getattr(err, "stderr", "") or str(err)),
                        }
                    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(report(rows, notes, args))


if __name__ == "__main__":
    main()
