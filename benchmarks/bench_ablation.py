"""Ablation grid: baselines, LDGAN and TLDiffGAN variants under `stethoscope bench`, plus latency.

For every data set and system, runs ``stethoscope bench`` (K-fold cross-validation over the
normal clips of each machine type, tested on the held-out normals + all anomalies; see
``evaluation/crossval.py``) and writes ``<out>/<data>/<system>/bench.json``. Then prints a
Markdown table (AUC, pAUC, AUC-s / AUC-t where the data has domains, training seconds per
fold) and writes it to ``<out>/ablation.md``.

Systems (``--systems`` picks a subset by these names):

| name | system | config |
| --- | --- | --- |
| dcase_ae_mse, dcase_ae_mahala | dcase_ae | dcase_ae.yaml + score_mode |
| gamma_vae_mse, gamma_vae_mahala | gamma_vae | gamma_vae.yaml + score_mode |
| embedding_knn | embedding_knn | embedding_knn.yaml (mn04 + 2-NN) |
| ldgan | ldgan | ldgan_cpu.yaml |
| tldiffgan, tldiffgan_no_diffusion, tldiffgan_no_wave, tldiffgan_no_tmixup, tldiffgan_random_encoder | tldiffgan | tldiffgan_cpu.yaml and its ablation files |
| aux_stgram, aux_mn04, aux_mn04_pooled, aux_mn04_lora, aux_mn04_frozen | aux_classifier | aux_classifier.yaml (STgram-MFN), aux_classifier_mn04.yaml, the latter with per_section=false, finetune=lora, or finetune=frozen with 6 s crops and section classes |
| ensemble_ae_knn, ensemble_ae_aux, ensemble_ae_aux_knn | ensemble | AE (MAHALA) with embedding_knn and/or aux_classifier (mn04) |
| mel_stats, auto, tldiffgan_mel_stats | mel_stats, auto, tldiffgan | their packaged configs; tldiffgan_mel_stats.yaml (issue 21) |

Data (``--data``, several allowed): folders of labelled clips in any supported layout, or
``toy`` for a toy-factory set generated with a fixed seed into a temporary folder. Default:
``toy``, ``../shared/data/real/dcase2020`` and ``../shared/data/real/mimii_0db`` (those that exist).

The grid runs ``stethoscope bench`` in this process with ``--threads`` torch threads, the
default feature cache, and no checkpoints (``--checkpoint-every 0``: the grid never resumes).

Latency (unless ``--no-latency``): the full ``tldiffgan_cpu`` system is trained on toy-factory
10 s clips (training seconds reported; features cached in ``<out>/.latency-cache``), saved,
reloaded, and, with no feature or embedding cache, scores clips one at a time: reading the
file, log-mel, LDGAN reconstruction and mel embedding, waveform encoder, fusion and all five
candidates (the ensemble needs every one) -> ms per 10 s clip, with ``--latency-threads`` torch threads (default 2 = the machine's 2 cores).

    python benchmarks/bench_ablation.py --data toy --systems dcase_ae_mse tldiffgan --out /tmp/ablation

Timings depend on machine load; accuracy on the tiny shared sets moves by 0.1-0.3 between folds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import bench_context, per_clip_ms, provenance  # noqa: E402

from stethoscope.cli import main as cli_main  # noqa: E402
from stethoscope.config import read_config  # noqa: E402
from stethoscope.data.layouts import scan  # noqa: E402
from stethoscope.data.toy_factory import make_toy_dataset  # noqa: E402
from stethoscope.systems import get_system, load_system  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STETHOSCOPE_SHARED", REPO.parent / "shared"))
DEFAULT_DATA = [
    "toy",
    str(SHARED / "data" / "real" / "dcase2020"),
    str(SHARED / "data" / "real" / "mimii_0db"),
]

# aux_classifier as an ensemble member: the packaged aux_classifier_mn04.yaml settings
MN04 = {"aux_classifier": {"frontend": "mn04", "finetune": "last", "last_blocks": 3}}
# name -> (registered system, packaged config or None, overrides)
SYSTEMS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "dcase_ae_mse": ("dcase_ae", None, {"score_mode": "mse"}),
    "dcase_ae_mahala": ("dcase_ae", None, {"score_mode": "mahala"}),
    "gamma_vae_mse": ("gamma_vae", None, {"score_mode": "mse"}),
    "gamma_vae_mahala": ("gamma_vae", None, {"score_mode": "mahala"}),
    "embedding_knn": ("embedding_knn", None, {}),
    "ldgan": ("ldgan", "ldgan_cpu.yaml", {}),
    "tldiffgan": ("tldiffgan", "tldiffgan_cpu.yaml", {}),
    "tldiffgan_no_diffusion": ("tldiffgan", "tldiffgan_no_diffusion.yaml", {}),
    "tldiffgan_no_wave": ("tldiffgan", "tldiffgan_no_wave.yaml", {}),
    "tldiffgan_no_tmixup": ("tldiffgan", "tldiffgan_no_tmixup.yaml", {}),
    "tldiffgan_random_encoder": ("tldiffgan", "tldiffgan_random_encoder.yaml", {}),
    # the discriminative family and ensembles (issue 12; docs/aux_classifier.md, docs/ensemble.md)
    "aux_stgram": ("aux_classifier", None, {}),
    "aux_mn04": ("aux_classifier", "aux_classifier_mn04.yaml", {}),
    "aux_mn04_pooled": ("aux_classifier", "aux_classifier_mn04.yaml", {"per_section": False}),
    "aux_mn04_lora": ("aux_classifier", "aux_classifier_mn04.yaml", {"finetune": "lora"}),
    # chosen on a three-section toy set (benchmarks/aux_sensitivity.py), then measured on the real sets
    "aux_mn04_frozen": (
        "aux_classifier",
        "aux_classifier_mn04.yaml",
        {"finetune": "frozen", "crop_frames": 192, "classes": "section"},
    ),
    # issue 21: the clip summary, the equal-weight auto ensemble, TLDiffGAN with the summary as a third branch
    "mel_stats": ("mel_stats", None, {}),
    "auto": ("auto", None, {}),
    "tldiffgan_mel_stats": ("tldiffgan", "tldiffgan_mel_stats.yaml", {}),
    "ensemble_ae_knn": (
        "ensemble",
        None,
        {
            "members": ["dcase_ae", "embedding_knn"],
            "member_params": {"dcase_ae": {"score_mode": "mahala"}},
        },
    ),
    "ensemble_ae_aux": (
        "ensemble",
        None,
        {
            "members": ["dcase_ae", "aux_classifier"],
            "member_params": {"dcase_ae": {"score_mode": "mahala"}, **MN04},
        },
    ),
    "ensemble_ae_aux_knn": (
        "ensemble",
        None,
        {
            "members": ["dcase_ae", "aux_classifier", "embedding_knn"],
            "member_params": {"dcase_ae": {"score_mode": "mahala"}, **MN04},
        },
    ),
}


def run_bench(
    data: Path,
    system: str,
    out: Path,
    args: argparse.Namespace,
    config: str | None = None,
    sets: dict[str, Any] | None = None,
    modes: list[str] | None = None,
) -> None:
    """``stethoscope bench`` in this process (its table goes to stderr: stdout keeps this script's);
    ``modes``: ``--score-modes``, each fold trained once and scored in every mode."""
    epochs_key = "ldgan.epochs" if system == "tldiffgan" else "epochs"  # TLDiffGAN: its LDGAN part
    sets = {**(sets or {}), **({epochs_key: args.epochs} if args.epochs is not None else {})}
    argv = [
        "bench",
        "--data",
        str(data),
        "--system",
        system,
        "--out",
        str(out),
        "--folds",
        str(args.folds),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
        "--quiet",
        "--checkpoint-every",
        "0",
    ]
    argv += ["--config", config] if config else []
    argv += ["--score-modes", ",".join(modes)] if modes else []
    argv += ["--set", *(f"{k}={json.dumps(v)}" for k, v in sets.items())] if sets else []
    with contextlib.redirect_stdout(sys.stderr):
        rc = cli_main(argv)
    if rc != 0:
        raise RuntimeError(f"stethoscope {' '.join(argv)} exited with {rc}")


def bench_modes(
    data: Path, system: str, modes: list[str], out: Path, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """One ``stethoscope bench --score-modes`` run; returns each mode's bench.json."""
    run_bench(data, system, out, args, modes=modes)
    return {m: json.loads((out / m / "bench.json").read_text()) for m in modes}


def bench_one(data: Path, name: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``stethoscope bench`` for one system on one data folder; returns its bench.json."""
    system, config, overrides = SYSTEMS[name]
    run_bench(data, system, out, args, config, overrides)
    return json.loads((out / "bench.json").read_text())


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def tables(results: dict[tuple[str, str], dict[str, Any] | str]) -> str:
    """Markdown: mean over sets per (data, system), then every set."""
    lines = ["| data | system | mean AUC | mean pAUC | sets |", "| --- | --- | --- | --- | --- |"]
    for (data, name), res in results.items():
        if isinstance(res, str):
            lines.append(f"| {data} | {name} | failed: {res} | | |")
        else:
            lines.append(
                f"| {data} | {name} | {_f(res.get('mean_auc'))} | {_f(res.get('mean_pauc'))} | "
                f"{len(res['sets'])} |"
            )
    lines += [
        "",
        "| data | set | system | normal | anomalous | AUC | pAUC | AUC-s | AUC-t | train s/fold |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (data, name), res in results.items():
        if isinstance(res, str):
            continue
        for set_name, s in res["sets"].items():
            lines.append(
                f"| {data} | {set_name} | {name} | {s['n_normal']} | {s['n_anomaly']} | {_f(s['auc'])} | "
                f"{_f(s['pauc'])} | {_f(s['auc_source'])} | {_f(s['auc_target'])} | "
                f"{s['train_seconds']:.1f} |"
            )
    return "\n".join(lines)


def pivot(results: dict[tuple[str, str], dict[str, Any] | str], key: str = "auc") -> str:
    """Per data set: one row per set, one column per system (``key``, mean over folds)."""
    lines: list[str] = []
    for data in dict.fromkeys(d for d, _ in results):
        names = [n for d, n in results if d == data and not isinstance(results[(d, n)], str)]
        sets = list(dict.fromkeys(s for n in names for s in results[(data, n)]["sets"]))  # type: ignore[index]
        if all(
            results[(data, n)]["sets"][st].get(key) is None  # type: ignore[index]
            for n in names
            for st in results[(data, n)]["sets"]
        ):  # type: ignore[index]
            continue  # e.g. AUC-s / AUC-t of a layout without domains
        lines += [
            "",
            f"{data}: {key} per set",
            "",
            "| set | " + " | ".join(names) + " |",
            "|" + " --- |" * (len(names) + 1),
        ]
        for set_name in sets + ["mean"]:
            cells = []
            for n in names:
                res = results[(data, n)]
                if set_name == "mean":
                    vals = [v[key] for v in res["sets"].values() if v.get(key) is not None]  # type: ignore[index]
                    cells.append(_f(float(np.mean(vals)) if vals else None))
                else:
                    cells.append(_f(res["sets"].get(set_name, {}).get(key)))  # type: ignore[index]
            lines.append(f"| {set_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency(root: Path, out: Path, n_clips: int, threads: int, epochs: int | None) -> str:
    """Train the full CPU TLDiffGAN on 10 s toy clips, then time end-to-end scoring per clip."""
    params = read_config("tldiffgan_cpu.yaml")
    if epochs is not None:
        params["ldgan"]["epochs"] = epochs
    clips = scan(root, machine="fan")
    train = [c for c in clips if c.split == "train"]
    test = [c for c in clips if c.split == "test"][:n_clips]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        system = get_system("tldiffgan", **params).fit(
            train, ctx=bench_context(out / ".latency-cache")
        )
        train_s = time.perf_counter() - start
        system.save(out / "latency-model")
        cold, ctx = load_system(out / "latency-model"), bench_context(cache_dir=None)
        cold.score(test[:1], ctx)  # first call builds the encoder: not part of the per-clip cost
        times = per_clip_ms(lambda one: cold.score(one, ctx), test)
    finally:
        torch.set_num_threads(before)
    seconds = np.mean([c.path.stat().st_size for c in test]) / (2 * 16_000)  # 16-bit mono WAV
    per_10s = np.array(times) * 10.0 / seconds
    return "\n".join(
        [
            "| measurement | value |",
            "| --- | --- |",
            f"| training, {len(train)} clips x 10 s, {params['ldgan']['epochs']} epochs | "
            f"{train_s:.1f} s |",
            f"| scoring, ms per 10 s clip (median of {len(times)}) | {np.median(per_10s):.0f} |",
            f"| scoring, ms per 10 s clip (min / max) | {per_10s.min():.0f} / {per_10s.max():.0f} |",
            f"| torch threads | {threads} |",
            f"| selection at scoring | {cold.selection_['chosen']} (all {len(cold.candidates)} candidates computed) |",
        ]
    )


def collect(dirs: list[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """Results of earlier runs (``<out>/<data>/<name>/bench.json`` and, for score modes,
    ``<out>/<data>/<system>/<mode>/bench.json``), in grid order, for re-tabulating."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for root in dirs:
        for path in sorted(root.glob("*/*/bench.json")) + sorted(root.glob("*/*/*/bench.json")):
            rel = path.relative_to(root).parts
            name = rel[1] if len(rel) == 3 else f"{rel[1]}_{rel[2]}"
            found[(rel[0], name)] = json.loads(path.read_text())
    data_order = ["toy", "dcase2020", "mimii_0db"]
    return dict(
        sorted(
            found.items(),
            key=lambda kv: (
                data_order.index(kv[0][0]) if kv[0][0] in data_order else 9,
                list(SYSTEMS).index(kv[0][1]) if kv[0][1] in SYSTEMS else 99,
            ),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        nargs="*",
        default=DEFAULT_DATA,
        help="data folders, or 'toy' (none: latency only)",
    )
    parser.add_argument(
        "--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS), metavar="NAME"
    )
    parser.add_argument("--out", help="output folder (required unless --collect)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--epochs", type=int, default=None, help="override every system's epochs (quick runs)"
    )
    parser.add_argument(
        "--toy-train", type=int, default=20, help="toy factory training clips per machine"
    )
    parser.add_argument(
        "--toy-test", type=int, default=20, help="toy factory test clips per machine"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for the grid (1: loaded machine)"
    )
    parser.add_argument("--latency-threads", type=int, default=2)
    parser.add_argument("--latency-clips", type=int, default=10)
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument(
        "--collect",
        nargs="+",
        metavar="DIR",
        help="only re-tabulate the bench.json files of earlier --out folders",
    )
    args = parser.parse_args()
    if args.collect:
        found = collect([Path(d) for d in args.collect])
        print(
            "\n".join(
                [tables(found)]
                + [pivot(found, k) for k in ("auc", "pauc", "auc_source", "auc_target")]
            )
        )
        return
    if not args.out:
        parser.error("--out is required")
    torch.set_num_threads(args.threads)
    if "STETHOSCOPE_WEIGHTS_DIR" not in os.environ and (SHARED / "weights").is_dir():
        os.environ["STETHOSCOPE_WEIGHTS_DIR"] = str(SHARED / "weights")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        toy = None
        if "toy" in args.data or not args.no_latency:
            toy = make_toy_dataset(
                Path(tmp) / "toy", n_train=args.toy_train, n_test=args.toy_test, seed=0
            )
        results: dict[tuple[str, str], dict[str, Any] | str] = {}
        for data in args.data:
            root = toy if data == "toy" else Path(data)
            label = "toy" if data == "toy" else root.name
            if not root.is_dir():
                print(f"skipping {data}: not a folder", file=sys.stderr)
                continue
            for system in ("dcase_ae", "gamma_vae"):  # MSE and MAHALA share each fold's training
                names = [
                    f"{system}_{m}" for m in ("mse", "mahala") if f"{system}_{m}" in args.systems
                ]
                if len(names) == 2:
                    print(f"== {label} / {system} (mse, mahala)", file=sys.stderr)
                    try:
                        both = bench_modes(
                            root, system, ["mse", "mahala"], out / label / system, args
                        )
                        results.update({(label, f"{system}_{m}"): r for m, r in both.items()})
                    except Exception as err:  # noqa: BLE001
                        traceback.print_exc()
                        results.update(
                            {(label, n): f"{type(err).__name__}: {err}"[:200] for n in names}
                        )
            for name in args.systems:
                if (label, name) in results:
                    continue
                print(f"== {label} / {name}", file=sys.stderr)
                try:
                    results[(label, name)] = bench_one(root, name, out / label / name, args)
                except Exception as err:  # noqa: BLE001  (one failing system must not stop the grid)
                    traceback.print_exc()
                    results[(label, name)] = f"{type(err).__name__}: {err}".replace("|", "/")[:200]
        report = [tables(results)]
        if not args.no_latency:
            report += [
                "",
                "Latency of the full TLDiffGAN (tldiffgan_cpu, mn04, ensemble):",
                "",
                latency(toy, out, args.latency_clips, args.latency_threads, args.epochs),
            ]
    report += [
        "",
        provenance(),
        f"grid threads {args.threads}; total {time.perf_counter() - started:.0f} s",
    ]
    text = "\n".join(report) + "\n"
    (out / "ablation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
