"""AE training time alone, beside a running `stethoscope demo`, and beside an identical training.

Builds one toy-factory data set (one machine type, --clips training clips of 10 s), warms the
feature cache with one untimed training run (every timed run then reads log-mels from that
cache), and times ``python -m stethoscope.cli train --data D --system dcase_ae --set epochs=E
threshold_fit=in_sample --quiet`` as a subprocess in three scenarios, interleaved (alone, demo, twin, alone, ...):

- alone: nothing else started by this script;
- demo:  beside a loop of ``python -m stethoscope.cli demo`` (restarted whenever it ends, so the
         load lasts the whole run; its own feature cache, warm after its first pass);
- twin:  beside an identical training started at the same moment (both are timed).

Every stethoscope process runs this checkout's ``src`` (or --src). --env KEY=VALUE, --threads N
and --train-args/--demo-args go to all of them (a fix lives in the code both processes run),
unless --measured-only. "foreign cores" is the average number of cores busy with processes
this script did not start during a run (/proc/stat minus its own processes). Before each run
the script waits (up to --quiet-wait s) for a quiet machine; a run with more foreign cores than
--max-foreign is disturbed by someone else's work and is run again (up to --retries times; the
table counts the disturbed runs it had to keep).

    python benchmarks/bench_concurrency.py [--clips 300] [--epochs 5] [--repeats 2]
        [--scenarios alone demo twin] [--env OMP_WAIT_POLICY=PASSIVE] [--threads 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import command, machine, table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


# -- CPU accounting ---------------------------------------------------------------------
def _busy_ticks() -> int:
    """Busy jiffies of all cores (user nice system irq softirq steal; not idle or iowait)."""
    with open("/proc/stat") as handle:
        f = [int(v) for v in handle.readline().split()[1:]]
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]


def wait_for_quiet(max_cores: float, limit: float) -> float:
    """Wait (up to ``limit`` s) for a 2 s window in which the machine is busier than ``max_cores``
    at most; returns the seconds waited."""
    t0 = time.perf_counter()
    while True:
        b0 = _busy_ticks()
        time.sleep(2.0)
        if (_busy_ticks() - b0) / TICK / 2.0 <= max_cores or time.perf_counter() - t0 > limit:
            return time.perf_counter() - t0


def _proc_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            f = handle.read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime, all threads
    except (OSError, IndexError, ValueError):
        return None


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration, ValueError):
        return None


class Monitor:
    """Samples /proc every 0.2 s: busy jiffies of the machine, CPU of this script's processes,
    the peak RSS (VmHWM) of the timed ones. ``foreign`` = machine busy - ours, in cores."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: dict[int, int] = {}  # pid -> ticks when first seen inside the window
        self.last: dict[int, int] = {}
        self.hwm: dict[int, float] = {}
        self.pids: set[int] = set()
        self.stop = threading.Event()
        self.busy0 = _busy_ticks()
        self.self0 = _proc_ticks(os.getpid()) or 0
        self.t0 = time.perf_counter()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def track(self, pid: int, started_now: bool) -> None:
        with self.lock:
            self.pids.add(pid)
            self.first[pid] = 0 if started_now else (_proc_ticks(pid) or 0)

    def sample(self) -> None:
        with self.lock:
            for pid in list(self.pids):
                t = _proc_ticks(pid)
                if t is not None:
                    self.last[pid] = t
                h = _vm_hwm_mb(pid)
                if h is not None:
                    self.hwm[pid] = h

    def exact(self, pid: int, ticks: int) -> None:
        """Final CPU of a reaped child (from wait4), replacing its last sample."""
        with self.lock:
            self.last[pid] = ticks
            self.pids.discard(pid)

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()

    def finish(self) -> float:
        """Average foreign cores over the window."""
        self.sample()
        self.stop.set()
        self.thread.join()
        wall = time.perf_counter() - self.t0
        ours = sum(self.last.get(p, self.first[p]) - self.first[p] for p in self.first)
        ours += (_proc_ticks(os.getpid()) or 0) - self.self0
        return max(0.0, (_busy_ticks() - self.busy0 - ours) / TICK / wall)


# -- processes --------------------------------------------------------------------------
def _wait(proc: subprocess.Popen, timeout: float) -> tuple[int, float, int, int]:
    """Reap ``proc`` with wait4: (returncode, cpu s, involuntary switches, cpu ticks); -9 on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu = ru.ru_utime + ru.ru_stime
            return proc.returncode, cpu, ru.ru_nivcsw, round(cpu * TICK)
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)


class DemoLoop:
    """`stethoscope demo` run again and again until stopped."""

    def __init__(self, cmd: list[str], env: dict[str, str], monitor: Monitor) -> None:
        self.cmd, self.env, self.monitor = cmd, env, monitor
        self.stop = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.runs = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                text=True,
            )
            self.monitor.track(self.proc.pid, started_now=True)
            _, err = self.proc.communicate()
            self.runs += 1
            if self.proc.returncode and not self.stop.is_set():
                raise RuntimeError(f"demo failed ({self.proc.returncode}):\n{err[-2000:]}")

    def close(self) -> None:
        self.stop.set()
        if self.proc and self.proc.poll() is None:
            self.monitor.sample()
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.thread.join()


def train_once(
    jobs: list[tuple[list[str], dict[str, str]]], timeout: float, monitor: Monitor
) -> list[dict]:
    """Start the (command, environment) trainings at once; wait; one result per timed process."""
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in jobs]  # a pipe could fill up
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                c, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
            )
            for (c, env), log in zip(jobs, logs)
        ]
        for p in procs:
            monitor.track(p.pid, started_now=True)
        results = []
        for (c, _), p, log in zip(jobs, procs, logs):
            rc, cpu, invol, ticks = _wait(p, timeout - (time.perf_counter() - t0))
            wall = time.perf_counter() - t0
            monitor.exact(p.pid, ticks)
            if rc != 0:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"{shlex.join(c)} -> {rc} after {wall:.0f} s:\n{err[-2000:]}")
            run = json.loads((Path(c[c.index("--out") + 1]) / "config.json").read_text())["run"]
            results.append(
                {
                    "wall": wall,
                    "fit": run["train_seconds"],
                    "cpu": cpu,
                    "invol": invol,
                    "rss": monitor.hwm.get(p.pid, float("nan")),
                    "threads": run["torch_threads"],
                }
            )
    return results


def measure(scenario: str, args: argparse.Namespace, tmp: Path, data: Path) -> dict:
    env_all = {**os.environ, "PYTHONPATH": str(args.src), "STETHOSCOPE_CACHE": str(tmp / "cache")}
    env_m = {**env_all, **args.env_dict}
    env_o = env_m if not args.measured_only else env_all
    train = [
        sys.executable,
        "-m",
        "stethoscope.cli",
        "train",
        "--data",
        str(data),
        "--system",
        "dcase_ae",
        "--set",
        f"epochs={args.epochs}",
        "threshold_fit=in_sample",
        "--quiet",
        *args.train_extra,
    ]
    train_o = train if not args.measured_only else train[: len(train) - len(args.train_extra)]
    monitor = Monitor()
    demo = None
    try:
        if scenario == "demo":
            demo_cmd = [
                sys.executable,
                "-m",
                "stethoscope.cli",
                "demo",
                "--out",
                str(tmp / "demo"),
                *(args.demo_extra if not args.measured_only else []),
            ]
            demo = DemoLoop(
                demo_cmd, {**env_o, "STETHOSCOPE_CACHE": str(tmp / "demo-cache")}, monitor
            )
            time.sleep(args.load_warmup)
        jobs = [(train + ["--out", str(tmp / "model")], env_m)]
        if scenario == "twin":
            jobs.append((train_o + ["--out", str(tmp / "twin")], env_o))
        res = train_once(jobs, args.timeout, monitor)
    finally:
        if demo:
            demo.close()
    foreign = monitor.finish()
    r = res[0]
    if scenario == "twin":
        r["twin_wall"] = res[1]["wall"]
    r["foreign"] = foreign
    r["demo_runs"] = demo.runs if demo else None
    return r


def _kv(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clips", type=int, default=300, help="training clips of one machine type (default 300)"
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="runs per scenario (default 2)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        default=["alone", "demo", "twin"],
        choices=("alone", "demo", "twin"),
    )
    parser.add_argument(
        "--env",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the stethoscope processes, e.g. OMP_WAIT_POLICY=PASSIVE",
    )
    parser.add_argument(
        "--threads", type=int, help="pass --threads N to train and demo (once the CLI has it)"
    )
    parser.add_argument("--train-args", default="", help="extra CLI flags for `train` (one string)")
    parser.add_argument("--demo-args", default="", help="extra CLI flags for `demo` (one string)")
    parser.add_argument(
        "--measured-only",
        action="store_true",
        help="--env/--threads/--train-args for the timed training only, not the demo or twin",
    )
    parser.add_argument(
        "--src", type=Path, default=REPO / "src", help="stethoscope source tree to run"
    )
    parser.add_argument(
        "--data", type=Path, help="existing data root (default: a fresh toy set in a temp dir)"
    )
    parser.add_argument(
        "--load-warmup", type=float, default=5.0, help="seconds the demo runs before timing"
    )
    parser.add_argument(
        "--timeout", type=float, default=400.0, help="seconds per timed run before it is killed"
    )
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=0.3,
        help="a run during which other people's processes kept more cores busy than this on "
        "average is disturbed and run again (default 0.3)",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="re-runs of a disturbed run (default 2)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait, before each run, for the machine to be quiet (default 60)",
    )
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args()
    args.env_dict = _kv(args.env)
    threads = ["--threads", str(args.threads)] if args.threads else []
    args.train_extra = shlex.split(args.train_args) + threads
    args.demo_extra = shlex.split(args.demo_args) + threads
    args.src = args.src.resolve()

    runs: dict[str, list[dict]] = {s: [] for s in args.scenarios}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-conc-") as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            env = {**os.environ, "PYTHONPATH": str(args.src)}
            code = (
                "import sys; from stethoscope.data import make_toy_dataset; "
                f"make_toy_dataset(sys.argv[1], machines=('fan',), n_train={args.clips}, n_test=0, seed=0)"
            )
            data = tmp / "toy"
            subprocess.run([sys.executable, "-c", code, str(data)], env=env, check=True)
        print(f"warming the feature cache ({data})", file=sys.stderr)
        measure("alone", argparse.Namespace(**{**vars(args), "epochs": 1}), tmp, data)
        for rep in range(args.repeats):
            for scenario in args.scenarios:
                for attempt in range(args.retries + 1):
                    waited = wait_for_quiet(args.max_foreign, args.quiet_wait)
                    r = measure(scenario, args, tmp, data)
                    r["disturbed"] = r["foreign"] > args.max_foreign
                    print(
                        f"[{rep + 1}/{args.repeats}] {scenario:<5} wall {r['wall']:6.1f} s  fit {r['fit']:6.1f} s  "
                        f"cpu {r['cpu']:6.1f} s  foreign {r['foreign']:.2f} cores (waited {waited:.0f} s for "
                        f"quiet){'  DISTURBED' if r['disturbed'] else ''}",
                        file=sys.stderr,
                    )
                    if not r["disturbed"]:
                        break
                runs[scenario].append(r)
    total = time.perf_counter() - started

    def med(s: str, k: str) -> float:
        return statistics.median(r[k] for r in runs[s])

    def spread(s: str, k: str) -> str:
        v = [r[k] for r in runs[s]]
        return f"{min(v):.1f}-{max(v):.1f}"

    print(
        f"machine: {machine()}; cores usable: {len(os.sched_getaffinity(0))}\ncommand: {command()}"
    )
    print(
        f"measured: {' '.join(['stethoscope train --system dcase_ae --set', f'epochs={args.epochs}', 'threshold_fit=in_sample --quiet', *args.train_extra])}"
        f" on {args.clips} toy clips of 10 s (features from the warm cache); env {args.env_dict or '{}'}"
        f"{' (timed process only)' if args.measured_only else ' (every stethoscope process)'}; "
        f"{args.repeats} runs per scenario, {total:.0f} s in all\n"
    )
    rows = []
    for s in args.scenarios:
        ratio = (
            ""
            if s == "alone" or "alone" not in runs
            else f"{med(s, 'wall') / med('alone', 'wall'):.2f}x"
        )
        fit_ratio = (
            ""
            if s == "alone" or "alone" not in runs
            else f"{med(s, 'fit') / med('alone', 'fit'):.2f}x"
        )
        rows.append(
            [
                s,
                f"{med(s, 'wall'):.1f} ({spread(s, 'wall')})",
                ratio,
                f"{med(s, 'fit'):.1f} ({spread(s, 'fit')})",
                fit_ratio,
                f"{med(s, 'cpu'):.1f}",
                f"{med(s, 'invol'):.0f}",
                f"{med(s, 'rss'):.0f}",
                runs[s][0]["threads"],
                f"{max(r['foreign'] for r in runs[s]):.2f}"
                + (
                    f" ({sum(r['disturbed'] for r in runs[s])} disturbed)"
                    if any(r["disturbed"] for r in runs[s])
                    else ""
                ),
            ]
        )
    print(
        table(
            [
                "scenario",
                "wall s, median (min-max)",
                "wall / alone",
                "fit s, median (min-max)",
                "fit / alone",
                "CPU s",
                "invol. switches",
                "peak RSS MB",
                "torch threads",
                "foreign cores (max)",
            ],
            rows,
        )
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": command(),
                    "machine": machine(),
                    "env": args.env_dict,
                    "train_extra": args.train_extra,
                    "runs": runs,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
