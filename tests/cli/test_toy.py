"""`toy`: a deterministic toy-factory data set in the DCASE 2022+ layout, scanned as such."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from stethoscope.cli import main
from stethoscope.data.layouts import scan

TINY = ["--train", "5", "--test", "4", "--seconds", "0.5", "--quiet"]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _toy(out: Path, *extra: str) -> Path:
    assert main(["toy", "--out", str(out), *TINY, *extra]) == 0
    return out


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    machines = ["--machines", "fan,valve=pump", "--seed", "7"]
    one = _digest(_toy(tmp_path / "a", *machines, "--workers", "1"))
    two = _digest(_toy(tmp_path / "b", *machines, "--workers", "2"))
    other = _digest(
        _toy(tmp_path / "c", "--machines", "fan,valve=pump", "--seed", "8", "--workers", "1")
    )
    assert one == two
    assert len([k for k in one if k.endswith(".wav")]) == 2 * 9
    assert other != one


def test_layout_scans_as_dcase2022_with_named_types(tmp_path: Path) -> None:
    root = _toy(tmp_path / "toy", "--machines", "gearbox,ToyCar=fan", "--sections", "00,01")
    clips = scan(root)
    assert {c.layout for c in clips} == {"dcase2022"}
    assert Counter(c.machine for c in clips) == {"gearbox": 18, "ToyCar": 18}
    for machine in ("gearbox", "ToyCar"):
        for section in ("00", "01"):
            mine = [c for c in clips if c.machine == machine and c.section == section]
            train = [c for c in mine if c.split == "train"]
            test = [c for c in mine if c.split == "test"]
            assert len(train) == 5 and {c.label for c in train} == {0}
            assert Counter(c.domain for c in train) == {"source": 4, "target": 1}
            assert len(test) == 4 and sum(c.label for c in test) == 2
            assert all(set(dict(c.attributes)) == {"speed", "load", "bg"} for c in mine)
    # ToyCar uses the fan sound: its attributes are drawn from the fan's values
    assert {
        dict(c.attributes)["speed"] for c in clips if c.machine == "ToyCar" and c.domain == "target"
    } == {"1800"}


@pytest.mark.parametrize(
    "machines, says",
    [
        ("fan,drill", "'drill'"),
        ("valve=horn", "'valve=horn'"),
        ("fan,fan", "'fan' twice"),
        (",", "empty"),
    ],
)
def test_bad_machines_exit_2_naming_the_item(
    tmp_path: Path, capsys: pytest.CaptureFixture, machines: str, says: str
) -> None:
    assert main(["toy", "--out", str(tmp_path / "x"), "--machines", machines, *TINY]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_refuses_to_mix_with_an_earlier_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _toy(tmp_path / "toy", "--machines", "fan")
    before = _digest(root)
    assert main(["toy", "--out", str(root), "--machines", "fan", "--train", "2", "--quiet"]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert _digest(root) == before
