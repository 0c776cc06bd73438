"""Layout scanners: every layout on tiny generated folders, auto-detection, errors, real data."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from stethoscope.data import load_audio, make_toy_dataset, scan
from stethoscope.data.layouts import detect_layout
from stethoscope.errors import LayoutError
from tests.conftest import write_wav

SR = 16_000


def _tone(freq: float = 440.0, seconds: float = 0.1, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _touch(root: Path, rel: str) -> Path:
    suffix = Path(rel).suffix
    return write_wav(root / rel, _tone(), SR, subtype="PCM_16" if suffix == ".wav" else None)


def _summary(clips) -> Counter:
    return Counter((c.machine, c.section, c.domain, c.split, c.label, c.layout) for c in clips)


# -- DCASE 2020 ---------------------------------------------------------------------------------
@pytest.fixture
def dcase2020(tmp_path: Path) -> Path:
    for rel in [
        "fan/train/normal_id_00_00000000.wav",
        "fan/train/normal_id_02_00000001.wav",
        "fan/test/normal_id_00_00000000.wav",
        "fan/test/anomaly_id_02_00000003.flac",
        "pump/test/id_04_00000007.wav",
    ]:
        _touch(tmp_path, rel)
    (tmp_path / "fan" / "README.txt").write_text("ignored")
    return tmp_path


def test_dcase2020(dcase2020: Path) -> None:
    assert detect_layout(dcase2020) == "dcase2020"
    clips = scan(dcase2020)
    assert _summary(clips) == Counter(
        {
            ("fan", "00", None, "train", 0, "dcase2020"): 1,
            ("fan", "02", None, "train", 0, "dcase2020"): 1,
            ("fan", "00", None, "test", 0, "dcase2020"): 1,
            ("fan", "02", None, "test", 1, "dcase2020"): 1,
            ("pump", "04", None, "test", None, "dcase2020"): 1,
        }
    )
    assert clips == sorted(clips, key=lambda c: str(c.path))
    assert {c.section_tag for c in clips if c.machine == "pump"} == {"id_04"}
    # a single machine-type folder as root
    fan = scan(dcase2020 / "fan", split="test")
    assert {c.machine for c in fan} == {"fan"} and len(fan) == 2
    assert [c.name for c in scan(dcase2020, machine="pump")] == ["id_04_00000007.wav"]


def test_unparseable_file_is_named(dcase2020: Path) -> None:
    bad = _touch(dcase2020, "fan/test/normal_00000000.wav")
    with pytest.raises(LayoutError, match=bad.name) as err:
        scan(dcase2020)
    assert "dcase2020" in str(err.value)
    with pytest.raises(LayoutError, match=re.escape("normal_00000000.wav")):
        scan(dcase2020, layout="dcase2020")


def test_anomaly_in_train_folder_is_rejected(dcase2020: Path) -> None:
    _touch(dcase2020, "fan/train/anomaly_id_00_00000009.wav")
    with pytest.raises(LayoutError, match=re.escape("anomaly_id_00_00000009.wav")):
        scan(dcase2020)


# -- DCASE 2021 ---------------------------------------------------------------------------------
def test_dcase2021(tmp_path: Path) -> None:
    for rel in [
        "gearbox/train/section_00_source_train_normal_0000_volt_1.0.wav",
        "gearbox/train/section_00_target_train_normal_0000_volt_1.5.wav",
        "gearbox/source_test/section_01_source_test_anomaly_0001.wav",
        "gearbox/target_test/section_01_target_test_normal_0002_volt_1.5.wav",
        "gearbox/target_test/section_03_target_test_0004.wav",
    ]:
        _touch(tmp_path, rel)
    assert detect_layout(tmp_path) == "dcase2021"
    clips = scan(tmp_path)
    assert _summary(clips) == Counter(
        {
            ("gearbox", "00", "source", "train", 0, "dcase2021"): 1,
            ("gearbox", "00", "target", "train", 0, "dcase2021"): 1,
            ("gearbox", "01", "source", "test", 1, "dcase2021"): 1,
            ("gearbox", "01", "target", "test", 0, "dcase2021"): 1,
            ("gearbox", "03", "target", "test", None, "dcase2021"): 1,
        }
    )
    assert clips[-1].attributes == (("volt", "1.5"),)
    _touch(tmp_path, "gearbox/source_test/section_00_target_test_normal_0005.wav")  # wrong folder
    with pytest.raises(LayoutError, match="section_00_target_test_normal_0005"):
        scan(tmp_path)


# -- DCASE 2022+ --------------------------------------------------------------------------------
def test_dcase2022_attributes_from_csv_and_name(tmp_path: Path) -> None:
    for rel in [
        "valve/train/section_00_source_train_normal_0000_v1pat_A.wav",
        "valve/train/section_00_target_train_normal_0000_v1pat_B.wav",
        "valve/test/section_00_source_test_anomaly_0000_v1pat_A.wav",
        "valve/test/section_00_0007.wav",
    ]:
        _touch(tmp_path, rel)
    (tmp_path / "valve" / "attributes_00.csv").write_text(
        "file_name,d1p,d1v,d2p,d2v\n"
        "valve/train/section_00_source_train_normal_0000_v1pat_A.wav,v1pat,A,noise,low\n"
    )
    assert detect_layout(tmp_path) == "dcase2022"
    clips = {c.name: c for c in scan(tmp_path)}
    assert clips["section_00_source_train_normal_0000_v1pat_A.wav"].attributes == (
        ("v1pat", "A"),
        ("noise", "low"),
    )
    assert clips["section_00_target_train_normal_0000_v1pat_B.wav"].attributes == (("v1pat", "B"),)
    ev = clips["section_00_0007.wav"]
    assert (ev.domain, ev.label, ev.split, ev.section) == (None, None, "test", "00")
    _touch(tmp_path, "valve/test/section_00_source_train_normal_0001.wav")  # train name in test/
    with pytest.raises(LayoutError, match="section_00_source_train_normal_0001"):
        scan(tmp_path)


def test_dcase2025_supplemental_and_hidden_attributes(tmp_path: Path) -> None:
    for rel in [
        "ToyPet/train/section_00_source_train_normal_0000_noAttribute.wav",
        "ToyPet/train/section_00_target_train_normal_0001_.wav",
        "ToyPet/test/section_00_source_test_anomaly_0000_noAttribute.wav",
        "ToyPet/supplemental/section_00_machine_0001_mic_2.wav",
        "ToyPet/supplemental/section_00_noise_0001_.wav",
        "ToyPet/supplemental/recording 7.wav",
        "bearing/train/section_00_source_train_normal_0000_vel_6.wav",
    ]:
        _touch(tmp_path, rel)
    (tmp_path / "bearing" / "attributes_00.csv").write_text(
        "file_name,d1p,d1v\nbearing/train/section_00_source_train_normal_0000_vel_6.wav,noAttribute,\n"
    )
    assert detect_layout(tmp_path) == "dcase2022"
    clips = {c.name: c for c in scan(tmp_path)}
    hidden = {name for name, c in clips.items() if c.hidden_attributes}
    assert hidden == {
        "section_00_source_train_normal_0000_noAttribute.wav",
        "section_00_source_test_anomaly_0000_noAttribute.wav",
        "section_00_source_train_normal_0000_vel_6.wav",
    }  # withheld in attributes_00.csv
    assert all(clips[name].attributes == () for name in hidden)
    assert (
        clips["section_00_target_train_normal_0001_.wav"].attributes == ()
    )  # empty attribute tail
    extra = {c.name: c for c in scan(tmp_path, split="supplemental")}
    assert {(c.split, c.label, c.domain, c.machine) for c in extra.values()} == {
        ("supplemental", None, None, "ToyPet")
    }
    assert extra["section_00_machine_0001_mic_2.wav"].attributes == (
        ("kind", "machine"),
        ("mic", "2"),
    )
    assert extra["section_00_noise_0001_.wav"].attributes == (("kind", "noise"),)
    assert extra["recording 7.wav"].attributes == () and extra["recording 7.wav"].section == "00"
    assert {c.split for c in scan(tmp_path, machine="ToyPet")} == {"train", "test", "supplemental"}


def test_dcase2026_two_channels(tmp_path: Path) -> None:
    near, far = _tone(440.0, 0.2), _tone(1000.0, 0.2) * 0.5
    for rel in [
        "ToyCar/train/section_00_source_train_normal_0000_car_A2_spd_28V_mic_1_noise_1.wav",
        "ToyCar/test/section_00_target_test_anomaly_0000_car_A2_spd_28V_mic_1_noise_1.wav",
    ]:
        write_wav(tmp_path / rel, np.stack([near, far], axis=1), SR, subtype="PCM_16")
    for channel, expected in ((0, near), (1, far), (None, (near + far) / 2)):
        clips = scan(tmp_path, channel=channel)
        assert {c.channel for c in clips} == {channel}
        wave = load_audio(clips[0].path, channel=clips[0].channel)
        np.testing.assert_allclose(wave, expected, atol=2e-4)
    assert dict(scan(tmp_path)[0].attributes) == {
        "car": "A2",
        "spd": "28V",
        "mic": "1",
        "noise": "1",
    }
    with pytest.raises(LayoutError, match="channel must be >= 0"):
        scan(tmp_path, channel=-1)


def test_toy_factory_output_scans(tmp_path: Path) -> None:
    root = make_toy_dataset(
        tmp_path, machines=("fan", "gearbox"), n_train=10, n_test=8, seconds=0.5
    )
    clips = scan(root)
    assert {c.layout for c in clips} == {"dcase2022"}
    for machine in ("fan", "gearbox"):
        mine = scan(root, machine=machine)
        train = [c for c in mine if c.split == "train"]
        test = [c for c in mine if c.split == "test"]
        assert len(train) == 10 and len(test) == 8
        assert {c.label for c in train} == {0}
        assert sum(c.label for c in test) == 4
        assert Counter(c.domain for c in train) == Counter({"source": 9, "target": 1})
        assert Counter(c.domain for c in test) == Counter({"source": 4, "target": 4})
        # attributes come from attributes_00.csv and agree with the file name
        for c in mine:
            attrs = dict(c.attributes)
            assert set(attrs) == {"speed", "load", "bg"}
            assert f"speed_{attrs['speed']}_load_{attrs['load']}_bg_{attrs['bg']}" in c.name


# -- MIMII --------------------------------------------------------------------------------------
def test_mimii_channel_selection_and_resampling(tmp_path: Path) -> None:
    sr = 44_100
    t = np.arange(int(0.2 * sr)) / sr
    eight = np.stack(
        [np.sin(2 * np.pi * 200 * (ch + 1) * t) * 0.05 * (ch + 1) for ch in range(8)], axis=1
    )
    write_wav(
        tmp_path / "slider/id_02/normal/00000000.wav",
        eight.astype(np.float32),
        sr,
        subtype="PCM_16",
    )
    write_wav(
        tmp_path / "slider/id_02/abnormal/00000001.wav",
        eight.astype(np.float32),
        sr,
        subtype="PCM_16",
    )
    write_wav(
        tmp_path / "slider/id_04/normal/00000000.wav",
        eight.astype(np.float32),
        sr,
        subtype="PCM_16",
    )
    assert detect_layout(tmp_path) == "mimii"
    clips = scan(tmp_path, channel=3)
    assert _summary(clips) == Counter(
        {
            ("slider", "02", None, "test", 0, "mimii"): 1,
            ("slider", "02", None, "test", 1, "mimii"): 1,
            ("slider", "04", None, "test", 0, "mimii"): 1,
        }
    )
    assert {c.channel for c in clips} == {3}
    # root may also be a type folder or an id folder
    assert len(scan(tmp_path / "slider")) == 3
    by_id = scan(tmp_path / "slider" / "id_02")
    assert len(by_id) == 2 and {c.machine for c in by_id} == {"slider"}
    # the selected channel is the one loaded, resampled to 16 kHz
    wave = load_audio(clips[0].path, channel=clips[0].channel)
    assert len(wave) == round(0.2 * 16_000)
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) * 16_000 / len(wave) == pytest.approx(
        800, abs=10
    )  # channel 3 = 800 Hz
    assert np.max(np.abs(wave)) == pytest.approx(0.2, rel=0.05)


# -- plain folder and manifest ------------------------------------------------------------------
def test_plain_folder(tmp_path: Path) -> None:
    root = tmp_path / "my_pump"
    for rel in [
        "normal/a.wav",
        "normal/b.flac",
        "abnormal/c.wav",
        "train/d.wav",
        "train/e.wav",
        "notes.md",
    ]:
        if rel.endswith(".md"):
            (root / rel).write_text("ignored")
        else:
            _touch(root, rel)
    assert detect_layout(root) == "folder"
    clips = scan(root)
    assert _summary(clips) == Counter(
        {
            ("my_pump", "00", None, "test", 0, "folder"): 2,
            ("my_pump", "00", None, "test", 1, "folder"): 1,
            ("my_pump", "00", None, "train", 0, "folder"): 2,
        }
    )
    _touch(root, "stray.wav")
    with pytest.raises(LayoutError, match=re.escape("stray.wav")):
        scan(root)


def test_manifest(tmp_path: Path) -> None:
    _touch(tmp_path, "audio/x.wav")
    _touch(tmp_path, "audio/y.flac")
    _touch(tmp_path, "audio/z.wav")
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "path,label,machine,section,domain\naudio/x.wav,normal,fan,1,source\naudio/y.flac,1,fan,01,target\naudio/z.wav,,,,\n"
    )
    assert detect_layout(manifest) == "manifest"
    clips = scan(manifest)
    assert [(c.machine, c.section, c.domain, c.label, c.layout) for c in clips] == [
        ("fan", "01", "source", 0, "manifest"),
        ("fan", "01", "target", 1, "manifest"),
        (tmp_path.name, "00", None, None, "manifest"),
    ]
    manifest.write_text("path,label\naudio/x.wav,broken\n")
    with pytest.raises(LayoutError, match=r"line 2.*broken"):
        scan(manifest)
    manifest.write_text("path,label\naudio/missing.wav,normal\n")
    with pytest.raises(LayoutError, match=re.escape("missing.wav")):
        scan(manifest)
    manifest.write_text("file,label\naudio/x.wav,normal\n")
    with pytest.raises(LayoutError, match="'path' and 'label'"):
        scan(manifest)


def test_normal_and_anomaly_folders_of_dcase_named_files_are_a_plain_folder(tmp_path: Path) -> None:
    """DCASE 2020 names outside train/ and test/ do not make a DCASE 2020 tree."""
    root = tmp_path / "valve"
    for rel in [
        "normal/normal_id_00_00000000.wav",
        "normal/normal_id_00_00000001.wav",
        "anomaly/anomaly_id_00_00000000.wav",
    ]:
        _touch(root, rel)
    assert detect_layout(root) == "folder"
    assert _summary(scan(root)) == Counter(
        {
            ("valve", "00", None, "test", 0, "folder"): 2,
            ("valve", "00", None, "test", 1, "folder"): 1,
        }
    )


def test_hidden_files_and_folders_are_never_scanned(dcase2020: Path) -> None:
    (dcase2020 / "fan" / "test" / "._normal_id_00_00000000.wav").write_bytes(b"\x00\x05\x16\x07")
    _touch(dcase2020, ".trash/fan/test/whatever.wav")
    assert len(scan(dcase2020)) == 5


def test_a_misfit_after_detection_names_the_flag(tmp_path: Path) -> None:
    root = tmp_path / "pump"
    for rel in ["normal/a.wav", "anomaly/b.wav", "extra/c.wav"]:
        _touch(root, rel)
    with pytest.raises(
        LayoutError,
        match=r"extra/c.wav.*auto-detected as folder.*--layout "
        r"dcase2020",
    ) as err:
        scan(root)
    assert "layout=" not in str(err.value)


def test_layouts_fitting_disjoint_parts_are_ambiguous(tmp_path: Path) -> None:
    _touch(tmp_path, "a/fan/test/normal_id_00_00000000.wav")
    _touch(tmp_path, "b/fan/id_00/normal/00000000.wav")
    with pytest.raises(
        LayoutError,
        match=r"no single layout fits every audio file \(mimii fits 1 "
        r"of 2, dcase2020 "
        r"fits 1 of 2\).*--layout mimii or --layout dcase2020",
    ):
        detect_layout(tmp_path)


# -- errors ---------------------------------------------------------------------------------
def test_empty_and_unknown_folders(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=f"{tmp_path}.*no audio.*tried layouts") as err:
        scan(tmp_path)
    assert all(name in str(err.value) for name in ("mimii", "dcase2020", "dcase2022", "folder"))
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(LayoutError, match="no audio"):
        scan(tmp_path)
    _touch(tmp_path, "misc/whatever.wav")
    with pytest.raises(LayoutError, match=r"no known layout.*misc/whatever.wav"):
        scan(tmp_path)
    with pytest.raises(LayoutError, match="no such"):
        scan(tmp_path / "absent")
    with pytest.raises(LayoutError, match="unknown layout"):
        scan(tmp_path, layout="dcase1999")


def test_filters_name_what_exists(dcase2020: Path) -> None:
    with pytest.raises(LayoutError, match="machines present: fan, pump"):
        scan(dcase2020, machine="valve")
    with pytest.raises(LayoutError, match="splits present: test"):
        scan(dcase2020, machine="pump", split="train")


# -- the shared real data -------------------------------------------------------------------
def test_real_dcase2020_and_mimii(real_data: Path) -> None:
    d20 = scan(real_data / "dcase2020")
    assert len(d20) == 128 and {c.layout for c in d20} == {"dcase2020"}
    assert {c.machine for c in d20} == {"fan", "pump", "slider", "toycar", "toyconveyor", "valve"}
    assert {c.label for c in d20} == {0, 1} and {c.split for c in d20} == {"test"}
    assert len(scan(real_data / "dcase2020" / "fan")) == len([c for c in d20 if c.machine == "fan"])
    mimii = scan(real_data / "mimii_0db")
    assert len(mimii) == 48 and {c.layout for c in mimii} == {"mimii"}
    assert {c.machine for c in mimii} == {"fan", "pump", "slider", "valve"}
    # the real root mixes two layouts: a clear error listing both and their flags, not a partial
    # list
    with pytest.raises(
        LayoutError,
        match=r"no single layout.*mimii fits 48 of 176.*dcase2020 "
        r"fits 128 of 176.*"
        r"--layout mimii or --layout dcase2020",
    ):
        scan(real_data)
