"""What the CLI tests share: running ``python -m stethoscope.cli`` for real, tiny toy data,
and one in-process trained model folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from stethoscope.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"
# every run on one thread, quiet, and two epochs unless a test says otherwise
FAST = ["--system", "dcase_ae", "--set", "epochs=2", "batch_size=64"]
RUNTIME = ["--threads", "1", "--quiet"]


def cli_env(cache: Path) -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout's sources first, a private cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env["STETHOSCOPE_CACHE"] = str(cache)
    return env


@contextmanager
def _sigint_inherited_as_default() -> Iterator[None]:
    """A process started with SIGINT ignored (e.g. from a shell's background job) passes that
    on, and the child's Python then never turns SIGINT into KeyboardInterrupt; handlers are
    reset on exec, so a handler in the parent means the default disposition in the child."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_cli(args: Sequence[str], cache: Path) -> subprocess.Popen:
    """``python -m stethoscope.cli ARGS`` running in the background (stdout and stderr piped)."""
    with _sigint_inherited_as_default():
        return subprocess.Popen(
            [sys.executable, "-m", "stethoscope.cli", *map(str, args)],
            env=cli_env(cache),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def finish(proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish in {timeout} s\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_cli(args: Sequence[str], cache: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return finish(start_cli(args, cache), timeout)


def run_many(commands: Sequence[Sequence[str]], cache: Path) -> list[subprocess.CompletedProcess]:
    """Several CLI runs at once (each spends most of its time importing torch)."""
    procs = [start_cli(args, cache) for args in commands]
    return [finish(p) for p in procs]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args} exited {result.returncode}\n{result.stderr}"
    return result


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two toy machine types with 4 training and 4 test clips of 2 s each."""
    from stethoscope.data.toy_factory import make_toy_dataset

    return make_toy_dataset(
        tmp_path_factory.mktemp("tiny"), n_train=4, n_test=4, seconds=2.0, seed=0
    )


@pytest.fixture(scope="session")
def cli_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-cache")


@pytest.fixture(scope="session")
def trained(toy_root: Path, cli_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dcase_ae trained in-process on the shared toy set: OUT/fan and OUT/gearbox (read-only)."""
    out = tmp_path_factory.mktemp("models")
    assert (
        main(
            [
                "train",
                "--data",
                str(toy_root),
                "--system",
                "dcase_ae",
                "--out",
                str(out),
                *FAST,
                *RUNTIME,
                "--cache",
                str(cli_cache),
            ]
        )
        == 0
    )
    return out
