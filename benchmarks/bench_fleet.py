"""A simulated fleet scored in one process and on Ray with 1 and 2 workers (issue 14).

``--clips`` short toy-factory clips (default 10,000 of 1 s) from ``--machines`` machines
(default 50) of three toy types (fan, gearbox, pump), laid out as a plant's share would be:
``DATA/<type>/m<NN>/<clip>.wav``, written once to ``--data`` and reused. A small dcase_ae per
type (``--train`` clips, ``--epochs`` epochs, in-sample threshold: the benchmark measures
scoring) is trained once into ``DATA/models``. Then each engine scores every clip in a fresh
process, no feature cache:

* ``single``: the single-process path, `System.score` per type on 1 torch thread (what
  ``stethoscope score`` does);
* ``ray N``: `score_with_ray` on a local Ray of N CPUs (``ray.init(num_cpus=N)``, N scoring
  actors of 1 thread), Ray's start-up timed apart from the scoring.

Per engine: clips/s of the scoring call, the peak RSS of the driver and, sampled every 0.1 s
over the process tree with psutil, the peak of the Ray workers' summed RSS and of the whole
tree's (driver + Ray's services + workers); scaling = clips/s over the single process's.

    python benchmarks/bench_fleet.py [--clips 10000] [--machines 50] [--seconds 1] [--workers 1 2]
    python benchmarks/bench_fleet.py --clips 200 --machines 5 --train 8   # smoke run

Needs the ray extra and psutil (``pip install 'stethoscope[ray]' psutil``). Prints Markdown for
docs/RESULTS.md; ``--json`` keeps the raw figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import child_json, markdown_header, peak_rss_mb, table  # noqa: E402

TYPES = ("fan", "gearbox", "pump")


def _load_models(models: Path) -> dict:
    """{machine type: loaded system} of a `train --out` folder."""
    from stethoscope.systems import load_system
    from stethoscope.systems.folders import model_folders

    return {machine: load_system(folder) for machine, folder in model_folders(models).items()}


def write_fleet(root: Path, clips: int, machines: int, seconds: float) -> Path:
    """``root/<type>/m<NN>/c<NNNNN>.wav``: ``clips`` toy clips spread over ``machines`` machines
    (round robin over the three types, one seed per machine), about 5 % with a fault; written once."""
    import numpy as np
    import soundfile as sf

    from stethoscope.data.toy_factory import toy_clip

    spec = {"clips": clips, "machines": machines, "seconds": seconds}
    marker = root / "fleet.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return root
    print(f"writing fleet {spec} to {root}", file=sys.stderr)
    rng = np.random.default_rng(0)
    for i in range(clips):
        m = i % machines
        kind = "bearing" if rng.random() < 0.05 else None
        wave, _ = toy_clip(TYPES[m % 3], anomaly_kind=kind, seed=1000 * m + i, seconds=seconds)
        path = root / TYPES[m % 3] / f"m{m:02d}" / f"c{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wave, 16_000)
    marker.write_text(json.dumps(spec))
    return root


def train_models(root: Path, n_train: int, epochs: int, seconds: float) -> Path:
    """A dcase_ae per type on ``n_train`` normal clips of its own (not scored), once."""
    from stethoscope.data.toy_factory import make_toy_dataset
    from stethoscope.engine import RunContext
    from stethoscope.data import scan
    from stethoscope.systems import get_system

    models = root / "models"
    if models.is_dir() and set(_load_models(models)) == set(TYPES):
        return models
    data = make_toy_dataset(
        root / "train", TYPES, n_train=n_train, n_test=0, seconds=seconds, seed=1
    )
    clips = scan(data)
    for machine in TYPES:
        system = get_system("dcase_ae", epochs=epochs, batch_size=256, threshold_fit="in_sample")
        system.fit([c for c in clips if c.machine == machine], ctx=RunContext(progress=False))
        system.save(models / machine, {"data_machine": machine})
    return models


class TreeMemory:
    """Peak RSS (MiB) of Ray's worker processes summed, and of this process's whole tree, sampled."""

    def __init__(self, every: float = 0.1) -> None:
        import psutil

        self.me, self.every = psutil.Process(), every
        self.workers = self.tree = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            workers = tree = 0
            for proc in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    tree += rss
                    if proc is not self.me and proc.name().startswith("ray::"):
                        workers += rss
                except psutil.Error:
                    continue
            self.workers, self.tree = (
                max(self.workers, workers / 2**20),
                max(self.tree, tree / 2**20),
            )
            self._stop.wait(self.every)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_engine(data: str, models: str, engine: str, workers: int) -> dict:
    """Score every fleet clip with one engine (in a fresh process)."""
    import logging

    import torch

    from stethoscope.data.clip import Clip
    from stethoscope.engine import RunContext
    from stethoscope.scale.sources import assign_models, list_inputs

    torch.set_num_threads(1)
    ctx = RunContext(progress=False, threads=1)
    files = list_inputs([data + "/" + t for t in TYPES])
    with TreeMemory() as memory:
        startup = 0.0
        if engine == "single":
            systems = _load_models(models)
            machines = assign_models(files, systems)
            start = time.perf_counter()
            for machine, system in systems.items():
                system.score(
                    [
                        Clip(path=f, machine=machine)
                        for f, m in zip(files, machines)
                        if m == machine
                    ],
                    ctx,
                )
        else:
            import ray

            from stethoscope.scale import score_with_ray

            start = time.perf_counter()
            ray.init(
                num_cpus=workers,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
            startup = time.perf_counter() - start
            start = time.perf_counter()
            score_with_ray([data + "/" + t for t in TYPES], models, ctx=ctx)
        seconds = time.perf_counter() - start
        if engine != "single":
            ray.shutdown()
    return {
        "engine": engine,
        "workers": workers,
        "clips": len(files),
        "seconds": seconds,
        "startup_s": startup,
        "clips_per_s": len(files) / seconds,
        "driver_peak_mb": peak_rss_mb(),
        "workers_peak_mb": memory.workers,
        "tree_peak_mb": memory.tree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clips", type=int, default=10_000, help="fleet clips to score (default 10,000)"
    )
    parser.add_argument(
        "--machines", type=int, default=50, help="machines the clips come from (default 50)"
    )
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="clip length in seconds (default 1)"
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="Ray CPUs to try (default 1 2)"
    )
    parser.add_argument(
        "--train", type=int, default=40, help="training clips per type (default 40)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    parser.add_argument(
        "--data", help="folder for the fleet and models (default: a temporary folder)"
    )
    parser.add_argument("--json", help="write the raw figures here")
    parser.add_argument(
        "--child", nargs=3, metavar=("DATA", "MODELS", "ENGINE:WORKERS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        engine, workers = args.child[2].split(":")
        print(json.dumps(run_engine(args.child[0], args.child[1], engine, int(workers))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data or tmp)
        write_fleet(root / "fleet", args.clips, args.machines, args.seconds)
        models = train_models(root, args.train, args.epochs, args.seconds)
        runs = [
            child_json([__file__, "--child", str(root / "fleet"), str(models), f"{engine}:{w}"])
            for engine, w in [("single", 1), *[("ray", w) for w in args.workers]]
        ]
    base = runs[0]["clips_per_s"]
    rows = [
        [
            r["engine"] if r["engine"] == "single" else f"ray, {r['workers']} CPU",
            r["clips"],
            round(r["seconds"], 2),
            round(r["startup_s"], 1),
            round(r["clips_per_s"], 1),
            round(r["clips_per_s"] / base, 2),
            round(r["driver_peak_mb"]),
            round(r["workers_peak_mb"]),
            round(r["tree_peak_mb"]),
        ]
        for r in runs
    ]
    print(
        markdown_header(
            f"Fleet scoring: {args.clips} clips of {args.seconds:g} s from {args.machines} machines"
        )
    )
    print(
        table(
            [
                "engine",
                "clips",
                "scoring s",
                "Ray start s",
                "clips/s",
                "vs single",
                "driver peak MiB",
                "workers peak MiB (sum)",
                "tree peak MiB",
            ],
            rows,
        )
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
