"""Side by side with the official DCASE 2023 Task 2 AE baseline, unmodified, on the same toy clips.

For each training-set size (default 10, 100 and 1,000 clips of one machine type, 10 s each,
plus ``--test`` labelled test clips), the same toy-factory data set is given to

* the official code (branch ``2023t2/v2.x.x`` of nttcslab/dcase2023_task2_baseline_ae), run
  as its ``train_ae.sh`` / ``test_ae.sh`` run it (``train.py --train_only``, then
  ``--test_only --score MSE``) with ``--epochs E --use_cuda False`` added, in a fresh scratch
  copy per size (its feature pickles, models and results start empty), with its own Python
  (``--python``: an environment with matplotlib < 3.11, which its test step needs); the data
  set is linked under the copy's ``data/dcase2023t2/dev_data/raw/<machine>``, since the code
  takes its ``--dataset_directory`` (``./data`` in baseline.yaml) relative to the working
  folder, and it knows only the DCASE 2023 machine-type names;
* ``stethoscope train --system dcase_ae --set epochs=E threshold_fit=in_sample
  --no-cache`` (the official code's threshold: a gamma fit to the final model's own training
  scores; stethoscope's default cross-fitted threshold would train 4 more models) then ``stethoscope
  evaluate --no-cache`` (both on the CPU, features computed from the files as the official
  code's first run does).

Wall time is that of the two processes of each side, start to exit (imports, feature
extraction, training, covariance pass, scoring, result files). Detection: AUC over all test
clips, AUC(source), AUC(target) (DCASE 2021+ definition) and pAUC, computed by the same
function from each side's anomaly-score CSV. Known differences that remain: the official
code trains on a random 90 % of the vectors (10 % validation) and plots a figure per epoch.

The official code is never part of this project: pass its folder, e.g.

    git clone -b 2023t2/v2.x.x https://github.com/nttcslab/dcase2023_task2_baseline_ae /tmp/dcase2023_ae
    python benchmarks/bench_official.py --official /tmp/dcase2023_ae --setup         # makes the venv once
    python benchmarks/bench_official.py --official /tmp/dcase2023_ae [--sizes 10 100 1000] [--epochs 100]
    python benchmarks/bench_official.py --official /tmp/dcase2023_ae --sizes 10 --epochs 2 --test 10  # smoke

``--setup`` creates ``--python``'s virtual environment (default /tmp/official-venv): this
process's torch version (pip's configured sources decide the build; a local CPU wheel where
pip's find-links has one) plus the baseline's requirements with ``matplotlib<3.11``.
Prints Markdown (command, machine, date, table) for docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO, markdown_header, table, toy_set  # noqa: E402

DCASE2023_DEV_TYPES = ("ToyCar", "ToyTrain", "fan", "gearbox", "bearing", "slider", "valve")
OFFICIAL_PACKAGES = [
    "numpy",
    "scipy",
    "librosa",
    "matplotlib<3.11",
    "seaborn",
    "tqdm",
    "fasteners",
    "pyyaml",
    "scikit-learn",
    "pandas",
]
SPEED_GOALS = {10: 10.0, 1000: 2.0}  # training clips -> at least this many times faster
AUC_GOAL = 0.02


def setup_venv(python: Path) -> None:
    """A fresh virtual environment for the official code (``python`` = its bin/python)."""
    import torch

    venv = python.parent.parent
    if python.exists():
        print(f"{python} exists; nothing to set up", file=sys.stderr)
        return
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    torch_version = torch.__version__.split("+")[0]
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"torch=={torch_version}", *OFFICIAL_PACKAGES],
        check=True,
    )


def check_official(folder: Path) -> None:
    expected = [
        folder / "train.py",
        folder / "baseline.yaml",
        folder / "datasets" / "machine_type_2023_dev.yaml",
    ]
    missing = [str(p) for p in expected if not p.is_file()]
    if missing:
        raise SystemExit(
            f"{folder} is not the official DCASE 2023 AE baseline (missing {', '.join(missing)}); "
            f"see this script's docstring"
        )


def timed(argv: list[str], cwd: Path, log: Path) -> float:
    """Run ``argv`` in ``cwd`` with its output in ``log``; wall seconds (exits on failure)."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.run(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit(
            f"{' '.join(argv)} exited {code} in {cwd}; last lines of {log}:\n"
            + "\n".join(log.read_text().splitlines()[-15:])
        )
    return seconds


def run_official(
    official: Path, python: Path, data: Path, machine: str, epochs: int, work: Path
) -> tuple[float, Path]:
    """The official train and test steps in a scratch copy; (wall seconds, anomaly-score CSV)."""
    scratch = work / "official"
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(official, scratch, ignore=shutil.ignore_patterns(".git"))
    raw = scratch / "data" / "dcase2023t2" / "dev_data" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / machine).symlink_to(data.resolve() / machine, target_is_directory=True)
    base = [
        str(python),
        "train.py",
        f"--dataset=DCASE2023T2{machine}",
        "-d",
        "-tag=id(0_)",
        "--use_ids",
        "0",
        "--epochs",
        str(epochs),
        "--use_cuda",
        "False",
    ]
    seconds = timed(base + ["--train_only"], scratch, work / "official-train.log")
    seconds += timed(base + ["--score", "MSE", "--test_only"], scratch, work / "official-test.log")
    found = sorted(
        scratch.glob(
            f"results/dev_data/*_MSE/anomaly_score_DCASE2023T2{machine}_section_00_test*.csv"
        )
    )
    if not found:
        raise SystemExit(f"no anomaly-score CSV from the official code under {scratch / 'results'}")
    return seconds, found[0]


def run_ours(data: Path, epochs: int, work: Path) -> tuple[float, Path]:
    """stethoscope's dcase_ae, train then evaluate, no feature cache; (wall seconds, score CSV folder)."""
    cli = [sys.executable, "-m", "stethoscope.cli"]
    models, results = work / "ours-models", work / "ours-results"
    for folder in (models, results):
        if folder.exists():
            shutil.rmtree(folder)
    train = [
        "train",
        "--data",
        str(data),
        "--system",
        "dcase_ae",
        "--out",
        str(models),
        "--set",
        f"epochs={epochs}",
        "threshold_fit=in_sample",
        "--no-cache",
        "--quiet",
        "--checkpoint-every",
        "0",
    ]
    seconds = timed(cli + train, REPO, work / "ours-train.log")
    seconds += timed(
        cli
        + [
            "evaluate",
            "--data",
            str(data),
            "--models",
            str(models),
            "--out",
            str(results),
            "--no-cache",
            "--quiet",
        ],
        REPO,
        work / "ours-evaluate.log",
    )
    return seconds, results


def detection(data: Path, score_csvs: list[Path]) -> dict[str, float | None]:
    """AUC, AUC(source), AUC(target), pAUC of one side's scores of the toy set's test clips."""
    from stethoscope.data import scan
    from stethoscope.evaluation.dcase_io import read_pairs
    from stethoscope.evaluation.metrics import section_metrics

    scores: dict[str, str] = {}
    for path in score_csvs:
        scores.update(read_pairs(path))
    test = [c for c in scan(data) if c.split == "test"]
    missing = [c.name for c in test if c.name not in scores]
    if missing:
        raise SystemExit(f"{len(missing)} test clips have no score, e.g. {missing[0]}")
    m = section_metrics(
        [c.label for c in test], [float(scores[c.name]) for c in test], [c.domain for c in test]
    )
    return {k: m[k] for k in ("auc", "auc_source", "auc_target", "pauc")}  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--official", type=Path, required=True, help="checkout of the official 2023 AE baseline"
    )
    parser.add_argument(
        "--python",
        type=Path,
        default=Path("/tmp/official-venv/bin/python"),
        help="interpreter for the official code (default /tmp/official-venv/bin/python)",
    )
    parser.add_argument(
        "--setup", action="store_true", help="create --python's virtual environment, then stop"
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10, 100, 1000], help="training clips"
    )
    parser.add_argument(
        "--epochs", type=int, default=100, help="epochs on both sides (default 100, the baseline's)"
    )
    parser.add_argument(
        "--test", type=int, default=200, help="labelled test clips (half anomalous, default 200)"
    )
    parser.add_argument(
        "--machine",
        default="fan",
        help="a DCASE 2023 machine type, NAME or NAME=SOUND "
        "(toy sound fan, gearbox or pump; default fan)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/bench-official"),
        help="scratch folder: toy sets, official copies, logs (default /tmp/bench-official)",
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--ours-only",
        action="store_true",
        help="keep the official side of an earlier run in --work (its official.json) and time "
        "only stethoscope again, e.g. after a change to stethoscope",
    )
    args = parser.parse_args()
    if args.setup:
        setup_venv(args.python)
        return
    check_official(args.official)
    if not args.python.exists():
        raise SystemExit(f"{args.python} does not exist: run this script with --setup first")
    machine, _, sound = args.machine.partition("=")
    if machine not in DCASE2023_DEV_TYPES:
        raise SystemExit(
            f"--machine {machine!r}: the official code knows {', '.join(DCASE2023_DEV_TYPES)}"
        )
    rows = []
    for n in args.sizes:
        work = args.work / f"n{n}"
        data = toy_set(
            work / "toy", n, args.test, machines=(machine,), sounds={machine: sound or machine}
        )
        off_s, off_csv = official_side(args, data, machine, work, n)
        print(f"[{n} clips] stethoscope dcase_ae", file=sys.stderr)
        our_s, our_dir = run_ours(data, args.epochs, work)
        rows.append(
            {
                "n": n,
                "official_s": off_s,
                "ours_s": our_s,
                "official": detection(data, [off_csv]),
                "ours": detection(data, sorted(our_dir.glob("anomaly_score_*.csv"))),
            }
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(report(rows, args))


def official_side(
    args: argparse.Namespace, data: Path, machine: str, work: Path, n: int
) -> tuple[float, Path]:
    """The official code's wall time and score CSV: run now (recorded in ``work/official.json``),
    or with ``--ours-only`` read from that record."""
    record = work / "official.json"
    if args.ours_only:
        if not record.exists():
            raise SystemExit(
                f"--ours-only: {record} is missing; run the official side for {n} clips first"
            )
        kept = json.loads(record.read_text())
        if kept["epochs"] != args.epochs:
            raise SystemExit(
                f"--ours-only: {record} is of {kept['epochs']} epochs, not {args.epochs}"
            )
        return float(kept["seconds"]), Path(kept["csv"])
    print(f"[{n} clips] official code", file=sys.stderr)
    seconds, csv = run_official(args.official, args.python, data, machine, args.epochs, work)
    record.write_text(json.dumps({"seconds": seconds, "csv": str(csv), "epochs": args.epochs}))
    return seconds, csv


def report(rows: list[dict], args: argparse.Namespace) -> str:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    body = []
    for r in rows:
        ratio = r["official_s"] / r["ours_s"]
        goal = SPEED_GOALS.get(r["n"])
        speed = f"{ratio:.1f}x"
        if goal is not None:
            speed += f" ({'met' if ratio >= goal else '**missed**'}: >= {goal:g}x)"
        diff = r["ours"]["auc"] - r["official"]["auc"]
        body.append(
            [
                r["n"],
                f"{r['official_s']:.1f}",
                f"{r['ours_s']:.1f}",
                speed,
                f(r["official"]["auc"]),
                f(r["ours"]["auc"]),
                f"{diff:+.3f} ({'met' if abs(diff) <= AUC_GOAL else '**missed**'})",
                f"{f(r['official']['auc_source'])} / {f(r['ours']['auc_source'])}",
                f"{f(r['official']['auc_target'])} / {f(r['ours']['auc_target'])}",
                f"{f(r['official']['pauc'])} / {f(r['ours']['pauc'])}",
            ]
        )
    head = markdown_header("Side by side with the official DCASE 2023 AE baseline")
    note = (
        f"Toy-factory clips of 10 s, machine type `{args.machine}`, {args.test} test clips (half anomalous, "
        f"half target domain), {args.epochs} epochs on both sides, CPU, score MSE; wall time = train + "
        f"test processes, start to exit, no feature cache or pickles left from earlier runs.\n"
    )
    return "\n".join(
        [
            head,
            note,
            table(
                [
                    "train clips",
                    "official s",
                    "stethoscope s",
                    "speed-up",
                    "AUC official",
                    "AUC stethoscope",
                    f"AUC difference (goal within {AUC_GOAL})",
                    "AUC-s off. / ours",
                    "AUC-t off. / ours",
                    "pAUC off. / ours",
                ],
                body,
            ),
        ]
    )


if __name__ == "__main__":
    main()
