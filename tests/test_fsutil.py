"""Crash safety of the atomic writers: writers are killed at each step of a folder replacement."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from stethoscope import fsutil
from stethoscope.fsutil import atomic_directory, atomic_write_bytes, recover_directory

# A writer process: stages version ARGV[2] of the folder ARGV[1], then dies (os._exit(9)) at step
# ARGV[3]; ARGV[4] == "fallback" makes the exchange report "unsupported". The package is stubbed so
# that the child imports only fsutil, not torch.
CHILD = r"""
import os, shutil, sys, types
from pathlib import Path
package = types.ModuleType("stethoscope")
package.__path__ = [sys.argv[5]]
sys.modules["stethoscope"] = package
from stethoscope import fsutil

path, version, step, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rename, exchange, rmtree = os.rename, fsutil._exchange, shutil.rmtree


def killing_rename(src, dst):
    rename(src, dst)
    renamed = Path(src) if step == "renamed-away" else Path(dst) if step == "renamed-in" else None
    if renamed == path:
        os._exit(9)


def killing_exchange(a, b):
    exchange(a, b)
    os._exit(9)


def killing_rmtree(folder, *args, **kwargs):
    if step == "mid-cleanup":
        os.remove(sorted(Path(folder).iterdir())[0])
    os._exit(9)


if mode == "fallback":
    fsutil._exchange = lambda a, b: False
with fsutil.atomic_directory(path) as staged:
    fsutil.atomic_write_json(staged / "config.json", {"version": version})
    (staged / "weights.bin").write_bytes(("weights " + version + "\n").encode() * 1000)
    if step == "staged":
        os._exit(9)
    os.rename = killing_rename
    if step == "exchanged":
        fsutil._exchange = killing_exchange
    if step in ("cleanup", "mid-cleanup"):
        shutil.rmtree = killing_rmtree
"""


def write(path: Path, version: str, step: str = "none", mode: str = "exchange") -> int:
    """Run a writer process to its death (or completion); its exit status."""
    args = [
        sys.executable,
        "-c",
        CHILD,
        str(path),
        version,
        step,
        mode,
        str(Path(fsutil.__file__).parent),
    ]
    return subprocess.run(args, check=False, timeout=120).returncode


def version_of(path: Path) -> str:
    """The version of a complete folder: both files present and consistent."""
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.bin"]
    version = json.loads((path / "config.json").read_text())["version"]
    assert (path / "weights.bin").read_bytes() == f"weights {version}\n".encode() * 1000
    return version


def exchange_works(folder: Path) -> bool:
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    try:
        return fsutil._exchange(folder / "a", folder / "b")
    finally:
        os.rmdir(folder / "a")
        os.rmdir(folder / "b")


@pytest.mark.parametrize(
    "mode, step, survivor",
    [
        ("exchange", "staged", "v1"),
        ("exchange", "exchanged", "v2"),
        ("exchange", "cleanup", "v2"),
        ("exchange", "mid-cleanup", "v2"),
        ("fallback", "staged", "v1"),
        ("fallback", "renamed-in", "v2"),
        ("fallback", "cleanup", "v2"),
        ("fallback", "mid-cleanup", "v2"),
    ],
)
def test_killed_writer_leaves_old_or_new_folder(
    tmp_path: Path, mode: str, step: str, survivor: str
) -> None:
    if mode == "exchange" and not exchange_works(tmp_path):
        pytest.skip("no atomic directory exchange on this OS or filesystem")
    model = tmp_path / "model"
    assert write(model, "v1") == 0
    assert write(model, "v2", step, mode) == 9
    assert version_of(model) == survivor
    assert write(model, "v3") == 0
    assert version_of(model) == "v3"
    assert os.listdir(tmp_path) == ["model"]  # the dead writer's staged / old folders are gone


def test_killed_first_write_leaves_no_folder_or_the_new_one(tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert write(model, "v1", "staged") == 9
    assert not model.exists()
    assert write(model, "v2", "renamed-in") == 9
    assert version_of(model) == "v2"
    assert write(model, "v3") == 0
    assert version_of(model) == "v3"
    assert os.listdir(tmp_path) == ["model"]


@pytest.mark.parametrize("repair", ["recover_directory", "next write"])
def test_fallback_death_between_renames_is_recovered(tmp_path: Path, repair: str) -> None:
    model = tmp_path / "model"
    assert write(model, "v1") == 0
    assert write(model, "v2", "renamed-away", "fallback") == 9
    assert not model.exists()  # the window of the two renames, which the exchange does not have
    if repair == "recover_directory":
        recover_directory(model)
        assert version_of(model) == "v1"
    else:
        with atomic_directory(model) as staged:
            assert version_of(model) == "v1"
            (staged / "config.json").write_text('{"version": "v3"}')
            (staged / "weights.bin").write_bytes(b"weights v3\n" * 1000)
        assert version_of(model) == "v3"
        assert os.listdir(tmp_path) == ["model"]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_modes_are_those_of_plainly_created_files(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        with atomic_directory(tmp_path / "model") as staged:
            (staged / "plain.bin").write_bytes(b"x")
            atomic_write_bytes(staged / "atomic.bin", b"x")
            (staged / "sub").mkdir()
    finally:
        os.umask(old)
    model = tmp_path / "model"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [model, *model.iterdir()]}
    assert modes == {
        "model": 0o777 & ~mask,
        "sub": 0o777 & ~mask,
        "plain.bin": 0o666 & ~mask,
        "atomic.bin": 0o666 & ~mask,
    }
    if mask == 0o022:
        assert (modes["model"], modes["atomic.bin"]) == (0o755, 0o644)


def test_live_writers_siblings_are_kept(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    with subprocess.Popen(["sleep", "60"]) as live:
        try:
            theirs = tmp_path / f".model.tmp-{live.pid}-0a1b2c3d"
            theirs.mkdir()
            (theirs / "weights.bin").write_bytes(b"in progress")
            with atomic_directory(model) as staged:
                (staged / "w").write_bytes(b"x")
            assert (theirs / "weights.bin").read_bytes() == b"in progress"
        finally:
            live.kill()
    with atomic_directory(model) as staged:
        (staged / "w").write_bytes(b"y")
    assert os.listdir(tmp_path) == ["model"]  # once its writer is dead the sibling is stale


def test_recovery_leaves_a_live_writers_old_folder(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "60"]) as live:
        try:
            theirs = tmp_path / f".model.old-{live.pid}"
            theirs.mkdir()
            recover_directory(tmp_path / "model")
            assert os.listdir(tmp_path) == [
                theirs.name
            ]  # its writer is about to move the new one in
        finally:
            live.kill()
    recover_directory(tmp_path / "model")
    assert os.listdir(tmp_path) == ["model"]


def test_failed_block_keeps_the_old_folder(tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert write(model, "v1") == 0
    with pytest.raises(RuntimeError), atomic_directory(model) as staged:
        (staged / "config.json").write_text("half")
        raise RuntimeError("training diverged")
    assert version_of(model) == "v1"
    assert os.listdir(tmp_path) == ["model"]
