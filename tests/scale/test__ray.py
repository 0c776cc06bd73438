"""Ray as an optional extra: a clear message without it, and flags that need it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stethoscope.cli import main
from stethoscope.errors import ConfigError
from stethoscope.scale._ray import ray_session


@pytest.mark.parametrize("verb", ["score", "train"])
def test_engine_ray_without_ray_exits_2_with_the_install_hint(
    verb: str,
    fleet_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setitem(
        sys.modules, "ray", None
    )  # what `import ray` meets where Ray is not installed
    args = (
        ["score", "--model", str(tmp_path), str(fleet_data)]
        if verb == "score"
        else ["train", "--data", str(fleet_data)]
    ) + ["--out", str(tmp_path / "out"), "--engine", "ray"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pip install 'stethoscope[ray]'" in err and "Traceback" not in err


def test_ray_flags_need_engine_ray(
    fleet_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(
            [
                "score",
                "--model",
                str(tmp_path),
                str(fleet_data),
                "--out",
                str(tmp_path / "o"),
                "--ray-cpus",
                "2",
            ]
        )
        == 2
    )
    assert "--ray-cpus, --out: only with --engine ray" in capsys.readouterr().err
    assert (
        main(
            ["train", "--data", str(fleet_data), "--out", str(tmp_path / "m"), "--address", "auto"]
        )
        == 2
    )
    assert "--address: only with --engine ray" in capsys.readouterr().err


def test_engine_ray_refuses_data_parallel(
    fleet_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(
            [
                "train",
                "--data",
                str(fleet_data),
                "--out",
                str(tmp_path / "m"),
                "--engine",
                "ray",
                "--data-parallel",
                "2",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--engine ray and --data-parallel: choose one" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_ray_cpus_and_address_exclude_each_other() -> None:
    pytest.importorskip(
        "ray", reason="Ray is the optional extra stethoscope[ray] (CI installs it with .[dev])"
    )
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    with (
        pytest.raises(ConfigError, match="--ray-cpus sizes a local Ray"),
        ray_session(address="auto", cpus=2),
    ):
        pass
