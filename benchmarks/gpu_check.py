"""GPU check: paper-sized TLDiffGAN and the DCASE AE trained on 3,000 toy clips, fp32 and bf16.

Measures, per system and precision: seconds per epoch, epochs/s, training clips/s, peak GPU
memory (``torch.cuda.max_memory_allocated``) and GPU utilisation while the training epochs
run (``nvidia-smi`` sampled every 200 ms in the background; samples are kept when their
timestamp falls inside an epoch, found by timing the engine's epochs). Features come from a
cache warmed beforehand (log-mels and encoder embeddings), so the epochs see what a second
run sees. Then the GPU's scores of a fixed model (trained on the CPU) are compared with the
CPU's: equal when max |gpu - cpu| / max(1, |cpu|) <= 1e-4.

TLDiffGAN is ``configs/tldiffgan.yaml`` (LDGAN 128 channels, batch 512) with the paper's
EAT-base encoder, randomly initialised when no EAT checkpoint is found (same size and cost).
``--tiny --device cpu`` is a dry run of every step at toy sizes on the CPU (no GPU figures).
A time budget (``--budget``) skips the steps that no longer fit, said in the output.

    bash benchmarks/gpu_check.sh                      # on the GPU machine: this, then the tests
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu-dry   # dry run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import markdown_header, table, toy_set, use_shared_weights  # noqa: E402

from stethoscope.config import load_config, merge  # noqa: E402
from stethoscope.data import scan  # noqa: E402
from stethoscope.encoders import embed_clips, get_fitted_encoder, list_encoders  # noqa: E402
from stethoscope.engine import RunContext  # noqa: E402
from stethoscope.engine import trainer  # noqa: E402
from stethoscope.features.extract import logmels  # noqa: E402
from stethoscope.systems import get_system  # noqa: E402

EQUAL_TOL = 1e-4
TINY_LDGAN = {
    "n_frames": 48,
    "ae_channels": 8,
    "latent_channels": 4,
    "gen_channels": 8,
    "gen_blocks": 1,
    "disc_channels": 8,
    "batch_size": 4,
    "score_draws": 1,
}


# -- instrumentation: when the engine's epochs run, and what the GPU did meanwhile -------------
EPOCH_WINDOWS: list[tuple[float, float]] = []
_engine_epoch = trainer._epoch


def _timed_epoch(*args: Any, **kwargs: Any) -> dict[str, float]:
    """The engine's epoch, its wall-clock window recorded (CUDA synchronised at both ends)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.time()
    out = _engine_epoch(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    EPOCH_WINDOWS.append((start, time.time()))
    return out


trainer._epoch = _timed_epoch


@contextmanager
def gpu_samples(device: str) -> Iterator[list[tuple[float, float]]]:
    """(unix time, utilisation %) samples of the GPU every 200 ms while the block runs."""
    samples: list[tuple[float, float]] = []
    if not device.startswith("cuda") or shutil.which("nvidia-smi") is None:
        yield samples
        return
    index = device.split(":")[1] if ":" in device else "0"
    proc = subprocess.Popen(
        [
            "nvidia-smi",
            "-i",
            index,
            "--query-gpu=timestamp,utilization.gpu",
            "--format=csv,noheader,nounits",
            "-lms",
            "200",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield samples
    finally:
        proc.terminate()
        out, _ = proc.communicate()
        for line in out.splitlines():
            stamp, _, util = line.partition(",")
            try:
                when = datetime.datetime.strptime(stamp.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
                samples.append((when, float(util)))
            except ValueError:
                continue


def in_epochs(
    samples: list[tuple[float, float]], windows: list[tuple[float, float]]
) -> list[float]:
    return [u for t, u in samples if any(a <= t <= b for a, b in windows)]


# -- the measurements ---------------------------------------------------------------------------
def epoch_seconds(system: Any) -> list[float]:
    if hasattr(system, "epoch_seconds_"):
        return list(system.epoch_seconds_)
    return [h["seconds"] for h in system.branch.history_]


def train_run(name: str, params: dict, clips: list, ctx: RunContext) -> dict:
    """Fit once; per-epoch speed, peak GPU memory and utilisation during the epochs."""
    cuda = ctx.device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    EPOCH_WINDOWS.clear()
    system = get_system(name, **params)
    with gpu_samples(ctx.device) as samples:
        start = time.perf_counter()
        system.fit(clips, ctx=ctx)
        fit_s = time.perf_counter() - start
    seconds = epoch_seconds(system)
    per_epoch = statistics.median(seconds[1:] or seconds)  # the first epoch pays for warm-up
    util = in_epochs(samples, EPOCH_WINDOWS)
    return {
        "system": name,
        "precision": ctx.precision,
        "clips": len(clips),
        "epochs": len(seconds),
        "s_per_epoch": per_epoch,
        "first_epoch_s": seconds[0],
        "fit_s": fit_s,
        "clips_per_s": len(clips) / per_epoch,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "util_mean": statistics.mean(util) if util else None,
        "util_median": statistics.median(util) if util else None,
        "util_samples": len(util),
    }


def equal_scores(name: str, params: dict, train: list, test: list, device: str, seed: int) -> dict:
    """A model fitted on the CPU scores the same clips on the CPU and on ``device``."""
    cpu = RunContext(progress=False, seed=seed)
    system = get_system(name, **params).fit(train, ctx=cpu)
    on_cpu = system.score(test, cpu)
    on_device = system.score(test, cpu.replace(device=device))
    diff = np.abs(on_device - on_cpu)
    worst = float(np.max(diff / np.maximum(1.0, np.abs(on_cpu))))
    return {
        "system": name,
        "clips": len(test),
        "max_abs": float(diff.max()),
        "max_scaled": worst,
        "equal": worst <= EQUAL_TOL,
    }


def configs(
    tiny: bool, ae_epochs: int, gan_epochs: int, real_mn04: bool
) -> dict[str, tuple[str, dict]]:
    """(system, hyperparameters) of each measured model: paper-sized unless ``tiny``."""
    ae = {**load_config("dcase_ae"), "epochs": ae_epochs}
    if tiny:
        gan = merge(
            load_config("tldiffgan", "tldiffgan_cpu"),
            {"ldgan": {**TINY_LDGAN, "epochs": gan_epochs}, "encoder": "random"},
        )
    else:
        gan = merge(
            load_config("tldiffgan"), {"encoder": "eat_base", "ldgan": {"epochs": gan_epochs}}
        )
    small_gan = merge(
        load_config("tldiffgan", "tldiffgan_cpu"),
        {
            "ldgan": {**(TINY_LDGAN if tiny else {}), "epochs": 1},
            "encoder": "efficientat_mn04" if real_mn04 else "random",
        },
    )
    return {
        "ae": ("dcase_ae", ae),
        "tldiffgan": ("tldiffgan", gan),
        "equal_ae": ("dcase_ae", {**ae, "epochs": 1, "score_mode": "mahala"}),
        "equal_tldiffgan": ("tldiffgan", small_gan),
    }


def warm_cache(clips: list, cfg: dict[str, tuple[str, dict]], device: str, cache: Path) -> float:
    """Log-mels and the TLDiffGAN encoder's embeddings of every clip into ``cache``; seconds."""
    start = time.perf_counter()
    system = get_system("tldiffgan", **cfg["tldiffgan"][1])
    logmels(clips, system.branch.logmel_params, cache_dir=cache, progress=False)
    encoder = get_fitted_encoder(system.encoder, None, device)
    embed_clips(encoder, clips, cache_dir=cache, progress=False)
    return time.perf_counter() - start


def use_random_eat(out: Path) -> bool:
    """Without an EAT checkpoint: a randomly initialised one (same size and cost) written to
    ``out/random-eat`` and put first in ``$STETHOSCOPE_WEIGHTS_DIR``; whether it was needed."""
    if next(e for e in list_encoders() if e["name"] == "eat_base")["weights_present"]:
        return False
    from stethoscope.encoders.eat import EAT_DIR_NAME, EATBackbone, EATConfig, save_eat_checkpoint
    from stethoscope.encoders.weights import WEIGHTS_DIR_ENV

    torch.manual_seed(0)
    save_eat_checkpoint(EATBackbone(EATConfig()), out / "random-eat" / EAT_DIR_NAME)
    others = os.environ.get(WEIGHTS_DIR_ENV, "")
    os.environ[WEIGHTS_DIR_ENV] = os.pathsep.join([str(out / "random-eat"), others])
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", default="cuda", help="cuda (default), cuda:N, or cpu for a dry run"
    )
    parser.add_argument("--tiny", action="store_true", help="toy sizes: a dry run of every step")
    parser.add_argument("--clips", type=int, help="training clips (default 3000; --tiny 8)")
    parser.add_argument(
        "--ae-epochs", type=int, default=2, help="AE epochs per precision (default 2)"
    )
    parser.add_argument(
        "--gan-epochs", type=int, default=3, help="TLDiffGAN epochs per precision (default 3)"
    )
    parser.add_argument(
        "--budget", type=float, default=270, help="seconds; later steps are skipped past it"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/gpu"), help="toy data, cache and gpu_check.json"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    began = time.perf_counter()
    RunContext(device=args.device).torch_device  # a clear error now when CUDA is absent
    n = args.clips or (8 if args.tiny else 3000)
    seconds = 2.0 if args.tiny else 10.0
    args.out.mkdir(parents=True, exist_ok=True)
    data = toy_set(args.out / "toy", n, 6 if args.tiny else 40, seconds=seconds, exact=False)
    clips = scan(data)
    train = [c for c in clips if c.split == "train"][:n]
    test = [c for c in clips if c.split == "test"]
    real_mn04 = use_shared_weights()
    eat_random = not args.tiny and use_random_eat(args.out)
    cfg = configs(
        args.tiny,
        1 if args.tiny else args.ae_epochs,
        1 if args.tiny else args.gan_epochs,
        real_mn04,
    )
    cache = args.out / "cache"
    ctx = RunContext(device=args.device, seed=args.seed, progress=False, cache_dir=cache)
    record: dict[str, Any] = {
        "device": args.device,
        "clips": n,
        "seconds": seconds,
        "train": [],
        "equal": [],
        "skipped": [],
        "errors": [],
        "eat_random": eat_random,
    }
    steps = [
        ("warm cache", lambda: record.update(warm_s=warm_cache(train, cfg, args.device, cache)))
    ]
    for key, label in (("equal_ae", "dcase_ae"), ("equal_tldiffgan", "tldiffgan_cpu")):
        steps.append(
            (
                f"equal scores {label}",
                lambda k=key: record["equal"].append(
                    equal_scores(*cfg[k], train[: min(20, n)], test[:20], args.device, args.seed)
                ),
            )
        )
    for key in ("ae", "tldiffgan"):
        for precision in ("fp32", "bf16"):
            steps.append(
                (
                    f"train {key} {precision}",
                    lambda k=key, p=precision: record["train"].append(
                        train_run(*cfg[k], train, ctx.replace(precision=p))
                    ),
                )
            )
    for label, step in steps:
        if time.perf_counter() - began > args.budget:
            record["skipped"].append(label)
            continue
        print(f"[gpu_check] {label} ({time.perf_counter() - began:.0f} s)", file=sys.stderr)
        try:
            step()
        except Exception as err:  # one failed step is reported; the others still run
            record["errors"].append(f"{label}: {type(err).__name__}: {err}")
        (args.out / "gpu_check.json").write_text(json.dumps(record, indent=1))
    record["total_s"] = time.perf_counter() - began
    (args.out / "gpu_check.json").write_text(json.dumps(record, indent=1))
    print(report(record, cfg))


def report(record: dict, cfg: dict[str, tuple[str, dict]]) -> str:
    def f(v: float | None, fmt: str = ".1f") -> str:
        return "-" if v is None else format(v, fmt)

    gan = cfg["tldiffgan"][1]
    random = gan["encoder"] == "random" or record.get("eat_random")
    weights = "random weights" if random else "its checkpoint"
    out = [
        markdown_header("GPU check"),
        f"Device {record['device']}; {record['clips']:,} toy clips of {record['seconds']:g} s; features and "
        f"embeddings from a warm cache (warming took {f(record.get('warm_s'))} s). TLDiffGAN: LDGAN "
        f"{gan['ldgan']['ae_channels']} channels, batch {gan['ldgan']['batch_size']}, "
        f"encoder {gan['encoder']} ({weights}). "
        f"s/epoch is the "
        f"median after the first epoch; GPU utilisation is sampled inside the epochs only.\n",
        table(
            [
                "system",
                "precision",
                "s/epoch",
                "epochs/s",
                "train clips/s",
                "first epoch s",
                "fit s",
                "peak GPU MB",
                "GPU util % mean / median (samples)",
            ],
            [
                [
                    r["system"],
                    r["precision"],
                    f(r["s_per_epoch"], ".2f"),
                    f(1 / r["s_per_epoch"], ".3f"),
                    f(r["clips_per_s"], ".0f"),
                    f(r["first_epoch_s"], ".2f"),
                    f(r["fit_s"]),
                    f(r["peak_gpu_mb"], ".0f"),
                    f"{f(r['util_mean'], '.0f')} / {f(r['util_median'], '.0f')} ({r['util_samples']})",
                ]
                for r in record["train"]
            ],
        ),
        "\nScores of a fixed model (fitted on the CPU), CPU against " + record["device"] + ":\n",
        table(
            [
                "system",
                "clips",
                "max abs difference",
                "max difference / max(1, abs score)",
                f"equal within {EQUAL_TOL:g}",
            ],
            [
                [
                    r["system"],
                    r["clips"],
                    f"{r['max_abs']:.3g}",
                    f"{r['max_scaled']:.3g}",
                    "yes" if r["equal"] else "**no**",
                ]
                for r in record["equal"]
            ],
        ),
    ]
    if record["skipped"]:
        out.append(f"\nSkipped (time budget): {', '.join(record['skipped'])}")
    if record["errors"]:
        out.append("\nFailed: " + "; ".join(record["errors"]))
    out.append(f"\nTotal {record['total_s']:.0f} s.")
    return "\n".join(out)


if __name__ == "__main__":
    main()
