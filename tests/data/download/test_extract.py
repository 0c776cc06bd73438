"""Unpacking: members placed from their machine-type folder down, zip-slip refused, a second
attributes file merged, and the ground truth applied once."""

from __future__ import annotations

from pathlib import Path

import pytest

from stethoscope.data.download.extract import (
    apply_ground_truth,
    extract_archive,
    read_ground_truth,
    relocate,
)
from stethoscope.errors import DownloadError

from .fixtures import zip_bytes


@pytest.mark.parametrize(
    "member, layout, placed",
    [
        ("fan/train/a.wav", "dcase2022", "fan/train/a.wav"),
        ("dev_data/fan/test/a.wav", "dcase2022", "fan/test/a.wav"),
        ("x/ToyPet/supplemental/s.wav", "dcase2022", "ToyPet/supplemental/s.wav"),
        ("fan/attributes_00.csv", "dcase2022", "fan/attributes_00.csv"),
        ("gearbox/source_test/a.wav", "dcase2021", "gearbox/source_test/a.wav"),
        ("-6dB/fan/id_00/normal/00000000.wav", "mimii", "fan/id_00/normal/00000000.wav"),
        ("README.md", "dcase2022", None),
        ("train/a.wav", "dcase2022", None),
    ],
)
def test_relocate(member: str, layout: str, placed: str | None) -> None:
    got = relocate(tuple(member.split("/")), layout)
    assert (str(got) if got else None) == placed


def test_unpacking_places_merges_and_refuses(tmp_path: Path) -> None:
    into = tmp_path / "eval"
    first = tmp_path / "train.zip"
    first.write_bytes(
        zip_bytes(
            {
                "wrap/fan/train/a.wav": b"a",
                "LICENSE.txt": b"l",
                "fan/attributes_00.csv": b"file_name,p,v\nfan/train/a.wav,p,1\n",
            }
        )
    )
    second = tmp_path / "test.zip"
    second.write_bytes(
        zip_bytes(
            {
                "fan/test/b.wav": b"b",
                "fan/attributes_00.csv": b"file_name,p,v\nfan/test/b.wav,p,2\n",
            }
        )
    )
    assert (
        extract_archive(first, into, "dcase2022") == 3
        and extract_archive(second, into, "dcase2022") == 2
    )
    assert (into / "fan" / "attributes_00.csv").read_text().splitlines() == [
        "file_name,p,v",
        "fan/train/a.wav,p,1",
        "fan/test/b.wav,p,2",
    ]
    assert (into / ".unplaced" / "train" / "LICENSE.txt").read_bytes() == b"l"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "eval",
        "test.zip",
        "train.zip",
    ]  # no staging left
    evil = tmp_path / "evil.zip"
    evil.write_bytes(zip_bytes({"../../etc/x.wav": b"x"}))
    with pytest.raises(DownloadError, match="points outside the archive"):
        extract_archive(evil, into, "dcase2022")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DownloadError, match="not a readable zip archive"):
        extract_archive(broken, into, "dcase2022")


def test_ground_truth_renames_once(tmp_path: Path) -> None:
    table_path = tmp_path / "list.csv"
    table_path.write_text(
        "fan\nsection_03_source_test_0000.wav,section_03_source_test_anomaly_0000.wav\n"
        "section_03_target_test_0000.wav,section_03_target_test_normal_0000.wav\n"
    )
    for rel in (
        "fan/source_test/section_03_source_test_0000.wav",
        "fan/target_test/section_03_target_test_0000.wav",
    ):
        (tmp_path / "eval" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "eval" / rel).write_bytes(b"w")
    table = read_ground_truth(table_path)
    said: list[str] = []
    assert apply_ground_truth(table, tmp_path / "eval", ["fan"], said.append) == {"fan": 2}
    assert (
        apply_ground_truth(table, tmp_path / "eval", ["fan"], said.append) == {"fan": 0}
        and not said
    )
    assert (tmp_path / "eval/fan/source_test/section_03_source_test_anomaly_0000.wav").exists()
    assert (tmp_path / "eval/fan/target_test/section_03_target_test_normal_0000.wav").exists()


def test_an_evaluator_table_is_read_and_each_line_checked(tmp_path: Path) -> None:
    good = tmp_path / "ground_truth_ToyDrone_section_00_test.csv"
    good.write_text(
        "section_00_0001.wav,section_00_target_test_anomaly_0001_mdl_B_spd_2\n"
        "section_00_0002.wav,section_00_source_test_normal_0002_noAttribute.wav\n"
    )
    assert read_ground_truth(good, "evaluator", "ToyDrone") == {
        "ToyDrone": [
            ("section_00_0001.wav", "section_00_target_test_anomaly_0001_mdl_B_spd_2.wav"),
            ("section_00_0002.wav", "section_00_source_test_normal_0002_noAttribute.wav"),
        ]
    }
    for text, line in [
        ("section_00_0001.wav,section_00_target_test_anomaly_0002_x\n", 1),  # another number
        (
            "section_00_0001.wav,section_00_source_test_normal_0001\nsection_00_0002.wav,"
            "section_01_source_test_normal_0002\n",
            2,
        ),  # another section
        ("section_00_0001.wav,section_00_source_train_normal_0001\n", 1),
    ]:  # not a test name
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(DownloadError, match=rf"bad.csv: line {line} \(.*\) does not pair"):
            read_ground_truth(bad, "evaluator", "ToyDrone")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DownloadError, match="no clip lines"):
        read_ground_truth(tmp_path / "empty.csv", "evaluator", "ToyDrone")


def _corrupt_deflate(path: Path) -> Path:
    """A zip whose member's deflate stream starts with an invalid block type (headers intact):
    zlib itself fails, not only the CRC check."""
    name = b"fan/train/a.wav"
    data = bytearray(zip_bytes({name.decode(): bytes(range(256)) * 4000}, compress=True))
    start = data.index(b"PK\x03\x04") + 30 + len(name)  # the local header, then the member's data
    data[start] = 0b111  # BFINAL 1, BTYPE 11: a block type deflate does not have
    path.write_bytes(bytes(data))
    return path


def _encrypted(path: Path) -> Path:
    """A zip whose member says it is encrypted (general purpose flag bit 0, local and central)."""
    data = bytearray(zip_bytes({"fan/train/a.wav": b"secret audio"}))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 1
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (_corrupt_deflate, "corrupt compressed data"),
        (_encrypted, "an encrypted member needs a password"),
    ],
)
def test_a_damaged_archive_is_a_clear_error_and_leaves_nothing_behind(
    tmp_path: Path, make, reason: str
) -> None:
    into = tmp_path / "dev"
    archive = make(tmp_path / "dev_fan.zip")
    with pytest.raises(
        DownloadError, match=rf"dev_fan.zip: not a readable zip archive \(({reason})"
    ) as caught:
        extract_archive(archive, into, "dcase2022")
    assert "run again to fetch it afresh" in str(caught.value)
    assert (
        not archive.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    )  # no staging folder either

    kept = make(tmp_path / "dev_fan.zip")  # an archive its published checksum vouches for stays
    with pytest.raises(DownloadError, match="the published file itself is damaged"):
        extract_archive(kept, into, "dcase2022", discard=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev_fan.zip"]
