"""Interrupted training continues where it stopped: `train --resume` after SIGKILL or Ctrl-C
ends with the same weights as a run that was never interrupted; a checkpoint made for other
hyperparameters is not resumed."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stethoscope.cli import main
from tests.cli.conftest import finish, ok, read_json, start_cli

EPOCHS = 10
MACHINE = "fan"


def train_args(data: Path, out: Path, *extra: str) -> list:
    return [
        "train",
        "--data",
        data,
        "--machine",
        MACHINE,
        "--system",
        "dcase_ae",
        "--out",
        out,
        "--set",
        f"epochs={EPOCHS}",
        "batch_size=64",
        *extra,
        "--checkpoint-every",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--no-cache",
    ]


def checkpoint_dir(out: Path) -> Path:
    return out / ".checkpoints" / MACHINE


def interrupt(
    procs: dict[Path, tuple[subprocess.Popen, int]], epoch: int = 2, timeout: float = 120
) -> dict[Path, subprocess.CompletedProcess]:
    """Send each training run (by its OUT) its signal once its checkpoint reports ``epoch``
    or later, then collect them; a run that ends first or never gets there fails the test."""
    waiting = dict(procs)
    deadline = time.monotonic() + timeout
    problem = None
    while waiting and problem is None:
        for out, (proc, sig) in list(waiting.items()):
            if proc.poll() is not None:
                problem = (
                    f"{out.name}: training ended (exit {proc.returncode}) "
                    f"before a checkpoint of epoch {epoch}"
                )
                break
            try:
                done = json.loads((checkpoint_dir(out) / "checkpoint.json").read_text())["epoch"]
            except (FileNotFoundError, json.JSONDecodeError):  # not written yet
                continue
            if done >= epoch:
                proc.send_signal(sig)
                del waiting[out]
        if time.monotonic() > deadline:
            problem = f"no checkpoint of epoch {epoch} in {timeout} s"
        time.sleep(0.005)
    for proc, _ in waiting.values():
        proc.kill()
    results = {out: finish(proc) for out, (proc, _) in procs.items()}
    if problem:
        pytest.fail(problem + "\n" + "\n".join(r.stderr for r in results.values()))
    return results


def resumed_epoch(stderr: str) -> int:
    match = re.search(r"resume: continuing after epoch (\d+)", stderr)
    assert match, stderr
    return int(match.group(1))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "weights.safetensors")), load_file(str(b / "weights.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(
            wa[key], wb[key], rtol=1e-6, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}"
        )


@pytest.fixture(scope="module")
def runs(tiny_root: Path, cli_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three runs at once: one uninterrupted (the reference), one killed with SIGKILL and one
    stopped with SIGINT, each once its checkpoint reports epoch 2; a copy of the killed
    run's checkpoint is kept aside."""
    tmp = tmp_path_factory.mktemp("resume")
    reference = start_cli(train_args(tiny_root, tmp / "reference"), cli_cache)
    try:
        stopped = interrupt(
            {
                tmp / name: (start_cli(train_args(tiny_root, tmp / name), cli_cache), sig)
                for name, sig in (("killed", signal.SIGKILL), ("ctrl-c", signal.SIGINT))
            }
        )
    finally:
        ok(finish(reference))
    assert stopped[tmp / "killed"].returncode == -signal.SIGKILL
    shutil.copytree(checkpoint_dir(tmp / "killed"), tmp / "stale-checkpoint")
    return {
        "reference": tmp / "reference",
        "killed": tmp / "killed",
        "stale": tmp / "stale-checkpoint",
        "ctrl-c": tmp / "ctrl-c",
        "ctrl-c result": stopped[tmp / "ctrl-c"],
        "tmp": tmp,
    }


def test_uninterrupted_run_leaves_no_checkpoint(runs: dict) -> None:
    assert (runs["reference"] / "weights.safetensors").exists()
    assert not (runs["reference"] / ".checkpoints").exists()
    assert read_json(runs["reference"] / "run.json")["resumed"] == []


def test_resume_after_sigkill_matches_uninterrupted_run(
    runs: dict, tiny_root: Path, capsys: pytest.CaptureFixture
) -> None:
    out = runs["killed"]
    assert (
        read_json(out / "run.json")["items"][MACHINE]["status"] == "running"
    )  # killed: no chance to say more
    assert (
        main([str(a) for a in train_args(tiny_root, out)] + ["--resume"]) == 0
    )  # in-process: same CLI
    assert 2 <= resumed_epoch(capsys.readouterr().err) < EPOCHS
    assert_same_weights(out, runs["reference"])
    run = read_json(out / "run.json")
    assert run["items"][MACHINE]["status"] == "trained" and len(run["resumed"]) == 1
    assert not (out / ".checkpoints").exists()
    history = read_json(out / "config.json")["extra_state"]["history"]
    assert history == pytest.approx(
        read_json(runs["reference"] / "config.json")["extra_state"]["history"], rel=1e-6, abs=1e-9
    )


def test_ctrl_c_says_where_the_checkpoint_is_then_resumes(
    runs: dict, tiny_root: Path, capsys: pytest.CaptureFixture
) -> None:
    out, stopped = runs["ctrl-c"], runs["ctrl-c result"]
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, stopped.stderr
    match = re.fullmatch(
        r"interrupted: checkpoint after epoch (\d+) in (.+); continue with --resume", lines[0]
    )
    assert match, lines[0]
    epoch, folder = int(match.group(1)), Path(match.group(2))
    assert folder == checkpoint_dir(out)
    assert 2 <= epoch < EPOCHS and read_json(folder / "checkpoint.json")["epoch"] == epoch
    assert read_json(out / "run.json")["items"][MACHINE]["status"] == "failed: interrupted"

    assert (
        main([str(a) for a in train_args(tiny_root, out)] + ["--resume"]) == 0
    )  # in-process: same CLI
    assert resumed_epoch(capsys.readouterr().err) == epoch
    assert_same_weights(out, runs["reference"])
    assert read_json(out / "run.json")["items"][MACHINE]["status"] == "trained"
    assert not (out / ".checkpoints").exists()


def test_checkpoint_of_other_hyperparameters_is_not_resumed(
    runs: dict, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The stale checkpoint was made with the default learning rate; a run with another one
    says so and trains from scratch, ending like a fresh run with that learning rate."""
    out, fresh = tmp_path / "other-lr", tmp_path / "fresh-lr"
    shutil.copytree(runs["stale"], checkpoint_dir(out))
    lr = "learning_rate=0.002"
    assert main([str(a) for a in train_args(tiny_root, out, lr)] + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert (
        f"resume: the checkpoint in {checkpoint_dir(out)} was made for other hyperparameters" in err
    )
    assert "starting fresh" in err and "continuing after epoch" not in err
    assert main([str(a) for a in train_args(tiny_root, fresh, lr)]) == 0
    assert read_json(out / "config.json")["params"]["learning_rate"] == pytest.approx(0.002)
    assert_same_weights(out, fresh)


def test_interrupt_between_checkpoint_files_still_resumes_exactly(
    runs: dict,
    tiny_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """Ctrl-C (or a kill) after the tensors of epoch 3 were written but before the JSON that
    describes them: the checkpoint on disk must still be one consistent epoch."""
    from stethoscope.engine import checkpoint

    real = checkpoint.atomic_write_json

    def write_json(path, payload):
        if Path(path).name == "checkpoint.json" and payload["epoch"] == 3:
            raise KeyboardInterrupt
        return real(path, payload)

    out = tmp_path / "between"
    args = [str(a) for a in train_args(tiny_root, out)]
    monkeypatch.setattr(checkpoint, "atomic_write_json", write_json)
    assert main(args) == 130
    monkeypatch.setattr(checkpoint, "atomic_write_json", real)
    assert "interrupted: checkpoint after epoch 2 in" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert resumed_epoch(capsys.readouterr().err) == 2
    assert_same_weights(out, runs["reference"])
