"""`RunContext`: the runtime settings of one run, kept apart from a system's hyperparameters.

Device, precision, seed, threads, progress, feature cache, checkpoint folder and where the
pretrained weights are change how a run executes, not what model it learns, so they are never
saved as hyperparameters. The CLI
builds one context from its flags and hands it to `fit` / `score`; the API's default is a
quiet-enough CPU run with no cache and no checkpoints.
"""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

PRECISIONS = ("fp32", "bf16")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """Torch threads when ``--threads`` is not given: 1 under OpenMP's PASSIVE wait policy
    (stethoscope's default, see the package ``__init__``), else the cores this process may use.

    With PASSIVE, idle OpenMP threads sleep, so every parallel region pays a wake-up; for the
    small layers of these models that cost more than a second core gave on 2 cores (RESULTS
    7.1, 7.4: an AE epoch on 3,000 clips 31 s on 1 thread, 51-59 s on 2; TLDiffGAN 31 ms per
    clip on 1 thread). Large encoders (EAT, BEATs) on many cores want ``--threads N``."""
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        return 1
    return available_cores()


@dataclass(frozen=True)
class RunContext:
    """How a run executes. ``cache_dir=None`` means no feature cache; ``checkpoint_dir=None``
    means no training checkpoints; ``resume`` continues from a matching checkpoint;
    ``data_parallel`` is the number of workers that train one model together (each a process
    in a torch.distributed group, see `engine.distributed` and `engine.launch`);
    ``weights_dirs`` are searched first for pretrained encoder weights (then
    ``$STETHOSCOPE_WEIGHTS_DIR`` and the cache, see `encoders.weights`)."""

    device: str = "cpu"
    precision: str = "fp32"
    seed: int = 0
    threads: int | None = None
    progress: bool = True
    cache_dir: Path | None = None
    checkpoint_dir: Path | None = None
    checkpoint_every: int = 1
    resume: bool = False
    data_parallel: int = 1
    weights_dirs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"unknown device {self.device!r}: use cpu, cuda or cuda:N")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.data_parallel < 1:
            raise ConfigError(
                f"data_parallel (--data-parallel) must be >= 1 worker, got {self.data_parallel}"
            )
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        for name in ("cache_dir", "checkpoint_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "weights_dirs", tuple(Path(d) for d in self.weights_dirs))

    # -- derived contexts -------------------------------------------------------------
    def replace(self, **changes: Any) -> RunContext:
        return replace(self, **changes)

    def for_run(self, *parts: str) -> RunContext:
        """The same context with checkpoints in a sub-folder (one per machine type and fold),
        so that runs never resume each other's training."""
        if self.checkpoint_dir is None:
            return self
        return replace(self, checkpoint_dir=self.checkpoint_dir.joinpath(*parts))

    # -- applying it --------------------------------------------------------------------
    @property
    def torch_device(self) -> torch.device:
        """The device; a clear error when CUDA is asked for but absent."""
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(
                f"device {self.device!r} requested but CUDA is not available; use --device cpu"
            )
        return torch.device(self.device)

    def check_device(self) -> None:
        """Fail now, before any model loads, when CUDA is asked for but absent."""
        _ = self.torch_device

    def apply_threads(self) -> int:
        """Set torch's intra-op threads to ``threads``, else to `default_threads`."""
        n = self.threads or default_threads()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n

    def seed_everything(self) -> None:
        """Seed python, numpy and torch's global generators (CPU and CUDA)."""
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        torch.manual_seed(self.seed)

    def generator(
        self, offset: int = 0, device: torch.device | str | None = None
    ) -> torch.Generator:
        """A generator on ``device`` (default: the run's device) seeded with seed + offset:
        random draws happen where the tensors live, never on a CPU generator for a GPU tensor."""
        gen = torch.Generator(device=device or self.torch_device)
        gen.manual_seed(self.seed * 1_000_003 + offset)
        return gen

    def autocast(self) -> AbstractContextManager[Any]:
        """bf16 autocast when ``precision='bf16'``, otherwise nothing."""
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(device_type=self.torch_device.type, dtype=torch.bfloat16)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """Move a CPU tensor to the run's device: pinned memory and a non-blocking copy on CUDA."""
        device = self.torch_device
        if device.type == "cpu":
            return tensor
        return tensor.pin_memory().to(device, non_blocking=True)

    def metadata(self) -> dict[str, Any]:
        """What the run record keeps of the runtime (beside, never inside, the hyperparameters);
        not where the weights are: a model folder names them by sha256, never by a local path."""
        out = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(self).items()
            if k != "weights_dirs"
        }
        out["torch_threads"] = torch.get_num_threads()
        return out
