"""Data-parallel check on a CUDA machine (docs/data_parallel.md): agreement, not speed.

1. Two gloo ranks sharing GPU 0 (torch.multiprocessing) each run the DCASE AE system's ``fit``
   unchanged with ``RunContext(device="cuda", data_parallel=2)``; one process fits the same
   system on the same GPU. Printed: the per-epoch mean losses of both, their largest relative
   difference, and the AUCs of both on the toy test clips. This runs the engine's data-parallel
   path on CUDA tensors with one GPU.
2. With two or more GPUs: ``stethoscope train --data-parallel 2 --device cuda`` (Ray Train,
   NCCL, one GPU per worker) vs ``--device cuda`` alone, the same figures. Skipped (said so)
   on a one-GPU machine.

    python benchmarks/gpu_ddp_check.py --out runs/gpu-ddp          # on the GPU machine
    python benchmarks/gpu_ddp_check.py --out /tmp/d --device cpu   # dry run of step 1 on the CPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import roc_auc_score

from stethoscope.data import scan
from stethoscope.data.toy_factory import make_toy_dataset
from stethoscope.engine import RunContext
from stethoscope.systems import get_system
from stethoscope.systems.base import load_system

PARAMS = {"epochs": 5, "batch_size": 256, "n_mels": 128}


def _fit(clips: list, ctx: RunContext) -> tuple[list[float], object]:
    system = get_system("dcase_ae", **PARAMS)
    system.fit(clips, None, ctx)
    return system.history_, system


def _rank(rank: int, size: int, root: str, device: str, tmp: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=size
    )
    train = [c for c in scan(root, machine="fan") if c.split == "train"]
    history, system = _fit(train, RunContext(device=device, progress=False, data_parallel=size))
    if rank == 0:
        system.save(Path(tmp) / "two")
        (Path(tmp) / "two.json").write_text(json.dumps(history))
    dist.destroy_process_group()


def _auc(system: object, test: list, device: str) -> float:
    scores = system.score(test, RunContext(device=device, progress=False))
    return float(roc_auc_score([c.label for c in test], scores))


def _rel(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/gpu-ddp")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n-train", type=int, default=60)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = make_toy_dataset(out / "toy", n_train=args.n_train, n_test=30, seed=0)
    clips = scan(root, machine="fan")
    train = [c for c in clips if c.split == "train"]
    test = [c for c in clips if c.split == "test"]
    lines = [
        f"## Data parallelism on {torch.cuda.get_device_name(0) if args.device == 'cuda' else 'CPU'}",
        "",
    ]

    one_hist, one = _fit(train, RunContext(device=args.device, progress=False))
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(2, str(root), args.device, tmp), nprocs=2, join=True)
        two_hist = json.loads((Path(tmp) / "two.json").read_text())
        two = load_system(Path(tmp) / "two")
        lines += [
            "1. Two gloo ranks on one device vs one process, dcase_ae "
            f"{PARAMS}, {len(train)} fan clips:",
            "",
            f"   - losses, 1 process: {[round(v, 5) for v in one_hist]}",
            f"   - losses, 2 ranks:   {[round(v, 5) for v in two_hist]}",
            f"   - largest relative difference per epoch: {_rel(two_hist, one_hist):.2e}",
            f"   - AUC 1 process {_auc(one, test, args.device):.4f}, 2 ranks {_auc(two, test, args.device):.4f}",
            "",
        ]

    if args.device == "cuda" and torch.cuda.device_count() >= 2:
        aucs, hists = {}, {}
        for name, extra in (("one", []), ("two", ["--data-parallel", "2"])):
            cmd = [
                sys.executable,
                "-m",
                "stethoscope.cli",
                "train",
                "--data",
                str(root),
                "--machine",
                "fan",
                "--out",
                str(out / name),
                "--device",
                "cuda",
                "--quiet",
                "--no-cache",
                "--checkpoint-every",
                "0",
                "--set",
                *[f"{k}={v}" for k, v in PARAMS.items()],
                *extra,
            ]
            subprocess.run(cmd, check=True)
            system = load_system(out / name)
            aucs[name], hists[name] = _auc(system, test, "cuda"), system.history_
        lines += [
            f"2. Ray Train, NCCL, 2 GPUs vs 1 GPU (CLI): largest relative loss difference "
            f"{_rel(hists['two'], hists['one']):.2e}; AUC {aucs['one']:.4f} vs {aucs['two']:.4f}",
            "",
        ]
    else:
        lines += [
            "2. Ray Train with NCCL: skipped, it needs two GPUs (this machine has "
            f"{torch.cuda.device_count()})",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    (out / "gpu_ddp_check.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
