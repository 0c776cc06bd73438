"""Where a fleet's files are and which model scores each (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stethoscope.errors import ConfigError, LayoutError
from stethoscope.scale.sources import assign_models, is_uri, list_inputs, machine_of
from tests.conftest import write_wav


def test_uri_detection() -> None:
    assert is_uri("s3://bucket/plant/fan/a.wav") and is_uri("file:///tmp/a.wav")
    assert not is_uri("/data/fan/a.wav") and not is_uri("C://x.wav") and not is_uri("fan/a.wav")


def test_nearest_enclosing_model_folder_names_the_machine_type() -> None:
    machines = ["fan", "pump"]
    assert machine_of("/plant/fan/m07/2026-12-02/clip.wav", machines) == "fan"
    assert machine_of("s3://bucket/pump/fan/clip.wav", machines) == "fan"  # the nearest folder wins
    assert machine_of("/plant/valve/clip.wav", machines) is None
    assert machine_of("/plant/fan.wav", machines) is None  # the file's own name is no folder
    assert machine_of("/anything/clip.wav", ["fan"]) == "fan"  # one model scores every file


def test_a_file_no_model_claims_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"/plant/valve/a\.wav: no enclosing folder .*fan, pump"):
        assign_models(
            ["/plant/fan/a.wav", "/plant/valve/a.wav"],
            {"fan": Path("m/fan"), "pump": Path("m/pump")},
        )


def test_local_folders_and_file_uris_list_the_same_audio(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow comes with the ray extra")
    wave = np.sin(np.linspace(0, 400, 16_000)).astype(np.float32)
    for rel in ("fan/m1/a.wav", "fan/m2/b.flac", "pump/c.wav", "fan/.hidden/d.wav", "fan/._e.wav"):
        write_wav(tmp_path / rel, wave)
    (tmp_path / "fan" / "notes.txt").write_text("not audio")
    local = list_inputs([str(tmp_path)])
    assert [Path(p).relative_to(tmp_path).as_posix() for p in local] == [
        "fan/m1/a.wav",
        "fan/m2/b.flac",
        "pump/c.wav",
    ]
    remote = list_inputs([tmp_path.as_uri()])
    assert remote == [Path(p).as_uri() for p in local]
    assert list_inputs([(tmp_path / "pump" / "c.wav").as_uri()]) == [
        (tmp_path / "pump" / "c.wav").as_uri()
    ]


def test_missing_or_empty_remote_folder_is_named(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="pyarrow comes with the ray extra")
    with pytest.raises(LayoutError, match="no such file or folder"):
        list_inputs([(tmp_path / "nowhere").as_uri()])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match="holds no audio files"):
        list_inputs([(tmp_path / "empty").as_uri()])
