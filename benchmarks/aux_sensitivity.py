"""Sensitivity of aux_classifier (mn04) to its main choices, beside the AE and mn04 + kNN.

One toy-factory data set (seed 0; ``--machines`` with ``--sections`` sections each, ``--n``
normal training clips and ``--test`` test clips per section) is written once. Each variant is
`aux_classifier_mn04.yaml` with the variant's keys changed, fitted jointly over the machine
types and scored on the same test clips; ``--reference`` systems (names of
``bench_ablation.py``) are fitted on the same clips. Prints (and writes) mean test AUC, AUC per
type, the training loss of the first and last epoch, training seconds and scoring ms per clip.

    python benchmarks/aux_sensitivity.py --out runs/aux-sens \\
        --variant frozen='{"finetune": "frozen"}' --variant margin02='{"margin": 0.2}'
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

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, bench_context, provenance  # noqa: E402
from bench_ablation import SYSTEMS  # noqa: E402
from learning_curve import first, run_size, score_types  # noqa: E402

from stethoscope.config import read_config  # noqa: E402
from stethoscope.data.layouts import scan  # noqa: E402
from stethoscope.data.toy_factory import make_toy_dataset  # noqa: E402
from stethoscope.systems import get_system  # noqa: E402


def variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=JSON`` -> (name, keys to change)."""
    name, _, body = text.partition("=")
    try:
        keys = json.loads(body or "{}")
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: not NAME=JSON ({err})") from None
    if not name or not isinstance(keys, dict):
        raise argparse.ArgumentTypeError(f"--variant {text!r}: not NAME=JSON object")
    return name, keys


def fit_variant(
    keys: dict[str, Any], groups: dict[str, list], tests: dict[str, list], seed: int
) -> dict[str, Any]:
    params = {k: v for k, v in read_config("aux_classifier_mn04.yaml").items() if k != "base"}
    system = get_system("aux_classifier", **{**params, **keys, "threshold_fit": "in_sample"})
    ctx = bench_context(seed=seed)
    t0 = time.perf_counter()
    fitted = system.fit_joint(groups, ctx=ctx)
    train_s = time.perf_counter() - t0
    history = fitted[next(iter(tests))].history_
    return {
        **score_types(fitted, tests, ctx),
        "train_seconds": train_s,
        "loss_first": history[0]["loss"],
        "loss_last": history[-1]["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", type=variant, action="append", default=[], metavar="NAME=JSON")
    parser.add_argument(
        "--reference", nargs="*", default=["dcase_ae_mse", "embedding_knn"], choices=list(SYSTEMS)
    )
    parser.add_argument("--n", type=int, default=20, help="training clips per section")
    parser.add_argument(
        "--test", type=int, default=20, help="test clips per section (half anomalous)"
    )
    parser.add_argument("--sections", nargs="+", default=["00", "01", "02"])
    parser.add_argument("--machines", nargs="+", default=["fan", "gearbox", "pump"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "STETHOSCOPE_WEIGHTS_DIR" not in os.environ and (SHARED / "weights").is_dir():
        os.environ["STETHOSCOPE_WEIGHTS_DIR"] = str(SHARED / "weights")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_toy_dataset(
            Path(tmp) / "toy",
            machines=args.machines,
            n_train=args.n,
            n_test=args.test,
            seed=0,
            sections=args.sections,
        )
        clips = sorted(scan(root), key=lambda c: str(c.path))
        groups = {m: first(clips, m, args.n) for m in args.machines}
        tests = {
            m: [c for c in clips if c.machine == m and c.split == "test"] for m in args.machines
        }
        results.update(run_size(groups, tests, args.reference, args.seed))
        for name, keys in [("aux_mn04 (as packaged)", {}), *args.variant]:
            results[name] = {**fit_variant(keys, groups, tests, args.seed), "keys": keys}
            print(f"  {name}: mean AUC {results[name]['mean_auc']:.3f}", file=sys.stderr)
            (out / "aux_sensitivity.json").write_text(json.dumps(results, indent=1))
    lines = [
        f"Mean test AUC over {', '.join(args.machines)} ({len(args.sections)} sections, {args.n} training and "
        f"{args.test} test clips per section):",
        "",
        "| system | changed keys | mean AUC | "
        + " | ".join(args.machines)
        + " | loss first / last epoch | "
        "train s | ms per clip |",
        "|" + " --- |" * (len(args.machines) + 6),
    ]
    for name, r in results.items():
        loss = f"{r['loss_first']:.2f} / {r['loss_last']:.2f}" if "loss_first" in r else "-"
        lines.append(
            f"| {name} | {json.dumps(r.get('keys', {})) if 'keys' in r else '-'} | {r['mean_auc']:.3f} | "
            + " | ".join(f"{r['per_type'][m]['auc']:.3f}" for m in args.machines)
            + f" | {loss} | {r['train_seconds']:.0f} | {r['score_ms_per_clip']:.0f} |"
        )
    text = "\n".join(lines + ["", provenance()]) + "\n"
    (out / "aux_sensitivity.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
