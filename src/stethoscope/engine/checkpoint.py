"""Training checkpoints: model, optimisers, RNG states, epoch and history, fingerprinted.

A checkpoint folder holds ``checkpoint-<run>-<epoch>.safetensors`` (tensors) and
``checkpoint.json`` (epoch, history, optimiser hyperparameters, fingerprint, and the name of
its tensors file), both written atomically. The JSON is written last and the previous
epoch's tensors are removed only after it, so the JSON always names the tensors of its own
epoch wherever a run is killed (one shared tensors file would already hold epoch k + 1 while
the JSON still said k). The fingerprint is a sha256 of the system's hyperparameters, the
seed and the training clip list: a checkpoint resumes only the run it was made for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from ..data.clip import Clip
from ..errors import CheckpointError
from ..fsutil import atomic_write_bytes, atomic_write_json

TENSORS, META = "checkpoint.safetensors", "checkpoint.json"  # TENSORS: where a JSON names no file


def _tensors_name(epoch: int, fingerprint_: str) -> str:
    """Per epoch and run: a fresh run over another run's checkpoint never overwrites the
    tensors that the other run's JSON still names."""
    return f"checkpoint-{fingerprint_[:12]}-{epoch:06d}.safetensors"


def fingerprint(system: str, params: dict[str, Any], seed: int, clips: Sequence[Clip]) -> str:
    """sha256 of what determines a training run: system, hyperparameters, seed, and the
    sorted list of training clips (path, channel, size)."""
    listing = sorted(f"{c.path}|{c.channel}|{_size(c.path)}" for c in clips)
    blob = json.dumps(
        {"system": system, "params": params, "seed": seed, "clips": listing},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return -1


def save_checkpoint(
    directory: Path,
    module: torch.nn.Module,
    optimisers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator],
    epoch: int,
    history: list[dict[str, float]],
    fingerprint_: str,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the training state after ``epoch`` completed epochs (``extra``: more tensors, e.g. the
    other data-parallel ranks' random states)."""
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    tensors.update(extra or {})
    groups = {}
    for name, opt in optimisers.items():
        state = opt.state_dict()
        groups[name] = state["param_groups"]
        for pid, slots in state["state"].items():
            for slot, value in slots.items():
                tensors[f"opt.{name}.{pid}.{slot}"] = torch.as_tensor(value)
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.torch_cuda"] = torch.cuda.get_rng_state()
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    name = _tensors_name(epoch, fingerprint_)
    atomic_write_bytes(directory / name, save(tensors))
    atomic_write_json(
        directory / META,
        {
            "epoch": epoch,
            "fingerprint": fingerprint_,
            "history": history,
            "param_groups": groups,
            "tensors": name,
        },
    )
    for old in [directory / TENSORS, *directory.glob("checkpoint-*.safetensors")]:
        if old.name != name:  # earlier epochs, now that the JSON names this one
            old.unlink(missing_ok=True)
    return directory


def read_meta(directory: Path) -> dict[str, Any] | None:
    """The checkpoint's JSON, None when there is none; a clear error when it is corrupt."""
    path = directory / META
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({err}); delete it to start fresh"
        ) from err


def load_checkpoint(
    directory: Path,
    meta: dict[str, Any],
    module: torch.nn.Module,
    optimisers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator],
    rank: int = 0,
    shared: Sequence[str] = (),
) -> None:
    """Restore what `save_checkpoint` wrote into freshly built objects.

    Data-parallel rank ``rank`` > 0 restores its own random streams (``rng.rank<r>.*``, kept by
    rank 0's checkpoint) except the generators named in ``shared``, which every rank shares; a
    stream the checkpoint lacks (it was written by fewer ranks) keeps its fresh seed."""
    path = directory / str(meta.get("tensors", TENSORS))
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated files
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({err}); delete it to start fresh"
        ) from err
    device = next(module.parameters()).device
    module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, opt in optimisers.items():
        state: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
        for key, value in tensors.items():
            if key.startswith(f"opt.{name}."):
                _, _, pid, slot = key.split(".", 3)
                state[int(pid)][slot] = value if slot == "step" else value.to(device)
        opt.load_state_dict({"state": dict(state), "param_groups": meta["param_groups"][name]})
    own = "rng." if rank == 0 else f"rng.rank{rank}."
    for name, gen in generators.items():
        key = f"rng.{name}" if name in shared else own + name
        if key in tensors:
            gen.set_state(tensors[key])
    if own + "torch" in tensors:
        torch.set_rng_state(tensors[own + "torch"])
    if own + "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors[own + "torch_cuda"])


def discard_checkpoint(directory: Path | None) -> None:
    """Remove a finished run's checkpoint folder and everything under it (its threshold folds,
    an ensemble's members, a joint fit's per-type runs): its model is saved by then."""
    if directory is not None and directory.is_dir():
        shutil.rmtree(directory, ignore_errors=True)


def prune_checkpoints(root: Path | None) -> None:
    """Remove the empty folders left under (and including) ``root`` once every run in it was
    discarded; folders that still hold a checkpoint (a failed or interrupted run) stay."""
    if root is None or not root.is_dir():
        return
    for folder in sorted(
        (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        _rmdir_if_empty(folder)
    _rmdir_if_empty(root)


def _rmdir_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (or already gone)
        folder.rmdir()
