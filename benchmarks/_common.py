"""Helpers shared by the benchmark scripts: run contexts, timing, child processes, machine
description and Markdown output.

torch and stethoscope are imported inside the helpers that need them, so that a parent
process that only starts children (and measures their memory) stays small.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stethoscope.engine import RunContext

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STETHOSCOPE_SHARED", REPO.parent / "shared"))


def bench_context(cache_dir: str | Path | None = None, seed: int = 0) -> RunContext:
    """The runtime of a benchmark: CPU, fp32, no progress bars, no checkpoints.

    ``cache_dir=None`` reads and writes no feature cache (a cold measurement); a folder
    gives a warm one once it holds the clips' features. Torch threads are left as the
    script set them (`RunContext.apply_threads` is not called).
    """
    from stethoscope.engine import RunContext

    return RunContext(
        seed=seed, progress=False, cache_dir=Path(cache_dir) if cache_dir is not None else None
    )


def per_clip_ms(score: Callable[[list], Any], clips: Sequence[Any]) -> list[float]:
    """Wall-clock milliseconds of ``score([clip])`` for each clip, one clip at a time
    (the caller warms up first: nothing here is discarded)."""
    times = []
    for clip in clips:
        start = time.perf_counter()
        score([clip])
        times.append(1000 * (time.perf_counter() - start))
    return times


def child_json(argv: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python ARGV`` in a fresh process (its memory peak is its own) and return the JSON
    object on the last line of its stdout. A failed child raises `subprocess.CalledProcessError`
    (its ``stderr`` says why)."""
    res = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def last_line(text: str) -> str:
    """The last non-empty line of a child's stderr (the exception, for a table cell)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def machine() -> str:
    """One line naming the machine a figure was measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores{gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )


def command() -> str:
    return "python " + " ".join(sys.argv)


def provenance() -> str:
    """The machine and command lines every benchmark prints with its table."""
    return f"machine: {machine()}\ncommand: {command()}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux's VmHWM: getrusage's ru_maxrss survives fork + exec, so a benchmark child would
    report its parent's peak as its own.
    """
    try:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def use_shared_weights() -> bool:
    """Point ``$STETHOSCOPE_WEIGHTS_DIR`` at ``../shared/weights`` unless it is set (children
    inherit it); whether the real EfficientAT mn04 weights are then found (never downloads)."""
    if "STETHOSCOPE_WEIGHTS_DIR" not in os.environ and (SHARED / "weights").is_dir():
        os.environ["STETHOSCOPE_WEIGHTS_DIR"] = str(SHARED / "weights")
    from stethoscope.encoders.weights import candidate_paths

    return any(p.exists() for p in candidate_paths("mn04_as_mAP_432.pt"))


def toy_set(
    root: Path,
    n_train: int,
    n_test: int,
    machines: Sequence[str] = ("fan",),
    seconds: float = 10.0,
    sounds: dict[str, str] | None = None,
    seed: int = 0,
    exact: bool = True,
) -> Path:
    """A toy-factory set at ``root`` (``stethoscope toy``'s generator), written once: a folder
    that already holds it (arguments recorded in ``toy.json``) is reused as it is, and so is a
    larger one of the same kind unless ``exact`` (the caller then takes the clips it needs)."""
    from stethoscope.data.toy_factory import make_toy_dataset
    from stethoscope.engine.context import available_cores

    spec = {
        "machines": list(machines),
        "n_train": n_train,
        "n_test": n_test,
        "seconds": seconds,
        "sounds": sounds or {},
        "seed": seed,
    }
    marker = root / "toy.json"
    if marker.is_file():
        have = json.loads(marker.read_text())
        same_kind = all(have[k] == spec[k] for k in ("machines", "seconds", "sounds", "seed"))
        if have == spec or (
            same_kind and not exact and have["n_train"] >= n_train and have["n_test"] >= n_test
        ):
            return root
    if root.exists() and any(root.iterdir()):
        raise SystemExit(
            f"{root} holds other files than this toy set ({spec}); give an empty or new folder"
        )
    print(f"writing toy set {spec} to {root}", file=sys.stderr)
    make_toy_dataset(
        root,
        machines,
        n_train=n_train,
        n_test=n_test,
        seconds=seconds,
        seed=seed,
        sounds=sounds,
        workers=available_cores(),
        progress=True,
    )
    marker.write_text(json.dumps(spec))
    return root


def markdown_header(title: str) -> str:
    """A section heading plus the command and machine lines, ready to paste into docs/RESULTS.md."""
    return f"### {title}\n\n`{command()}`\n\nMachine: {machine()}\n"
