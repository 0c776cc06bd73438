"""Finding weights by sha256 in the run's folders (`encoders.weights.find_by_sha256`) and the
encoder registry's use of it; never touches the network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stethoscope.encoders import locate_encoder_weights
from stethoscope.encoders import weights as W
from stethoscope.errors import CheckpointError


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache folder, no $STETHOSCOPE_WEIGHTS_DIR, no network."""
    monkeypatch.setattr(W, "weights_cache_dir", lambda: tmp_path / "cache")
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV, raising=False)

    def offline(url, dest):
        raise OSError("network unreachable")

    monkeypatch.setattr(W, "download", offline)
    return tmp_path


def _file(path: Path, payload: bytes) -> tuple[Path, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path, W.sha256_of(path)


def test_any_file_with_the_sha256_is_found_whatever_its_name(home):
    _file(home / "B" / "other.bin", b"not these")
    wanted, sha = _file(home / "B" / "sub" / "renamed.weights", b"the weights")
    assert W.find_by_sha256(sha, "model.pt", [home / "B"]) == wanted
    official, _ = _file(home / "C" / "model.pt", b"the weights")  # the official name: first
    assert W.find_by_sha256(sha, "model.pt", [home / "C", home / "B"]) == official


def test_the_environment_and_a_hint_are_searched(home, monkeypatch):
    wanted, sha = _file(home / "env" / "x.pt", b"env weights")
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, os.pathsep.join([str(home / "none"), str(home / "env")]))
    assert W.find_by_sha256(sha, "model.pt") == wanted
    monkeypatch.delenv(W.WEIGHTS_DIR_ENV)
    assert W.find_by_sha256(sha, "model.pt", hint=wanted) == wanted
    with pytest.raises(CheckpointError):
        W.find_by_sha256(sha, "model.pt", hint=home / "dead.pt")


def test_hashes_are_cached_by_size_and_mtime(home, monkeypatch):
    path, sha = _file(home / "B" / "w.pt", b"weights v1")
    calls = []
    real = W.sha256_of
    monkeypatch.setattr(W, "sha256_of", lambda p, *a: calls.append(Path(p)) or real(p, *a))
    assert W.find_by_sha256(sha, "model.pt", [home / "B"]) == path
    assert W.find_by_sha256(sha, "model.pt", [home / "B"]) == path
    assert calls == [path]  # hashed once, then read from the index
    index = json.loads((home / "cache" / W.INDEX_FILE).read_text())
    assert index[str(path.resolve())][2] == sha
    path.write_bytes(b"weights v2, another size")  # changed: hashed again, no longer a match
    with pytest.raises(CheckpointError):
        W.find_by_sha256(sha, "model.pt", [home / "B"])
    assert calls == [path, path]


def test_missing_weights_name_the_file_and_sha256(home):
    with pytest.raises(CheckpointError) as err:
        W.find_by_sha256("ab" * 32, "model.pt", [home / "B"])
    msg = str(err.value)
    assert f"model.pt (sha256 {'ab' * 32})" in msg and str(home / "B") in msg
    assert "--weights-dir" in msg
    with pytest.raises(
        CheckpointError, match=r"download failed .*network unreachable"
    ):  # published
        W.find_by_sha256("ab" * 32, "model.pt", [home / "B"], url="https://example.org/model.pt")


def test_a_folder_checkpoint_is_found_by_its_model_file(home):
    """EAT is a folder (model.safetensors + config.json): its sha256 is the model file's."""
    model, sha = _file(home / "B" / "EAT-base_epoch30_pretrain" / "model.safetensors", b"eat")
    assert locate_encoder_weights("eat_base", sha, [home / "B"]) == model
    assert locate_encoder_weights("eat_base", None, [home / "B"]) == model.parent  # a fit: by name
    moved, _ = _file(home / "C" / "my-eat" / "model.safetensors", b"eat")
    assert locate_encoder_weights("eat_base", sha, [home / "C"]) == moved
    assert locate_encoder_weights("random", None) is None
    assert locate_encoder_weights("random", "random") is None
