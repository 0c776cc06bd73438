"""`stethoscope cache info|clear`: folder, files, size per kind and the cap; clear frees it all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stethoscope.cli import main
from stethoscope.cli.cache import human_bytes
from stethoscope.features.cache import FeatureCache, cache_usage


def _fill(root: Path) -> None:
    """Three log-mels and one embedding (128 bytes of data each, plus the .npy header), and a
    weights file that is not a cached feature."""
    mels = FeatureCache(root, "logmel", {"n_mels": 128})
    for i in range(3):
        mels.put(f"{i:032x}-c0", np.zeros(32, np.float32))
    FeatureCache(root, "embeddings", {"encoder": "x"}).put(f"{9:032x}-c0", np.ones(32, np.float32))
    (root / "weights").mkdir()
    (root / "weights" / "mn04_as_mAP_432.pt").write_bytes(b"weights")


def _info(capsys: pytest.CaptureFixture, *extra: str) -> dict[str, str]:
    assert main(["cache", "info", *extra]) == 0
    rows = [line.split(None, 1) for line in capsys.readouterr().out.splitlines()]
    return {key: value for key, value in rows}


def test_info_shows_folder_files_sizes_and_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "cache"
    _fill(root)
    usage = cache_usage(root)
    assert usage.files == 4
    info = _info(capsys, "--cache", str(root))
    assert info["folder"] == str(root) and info["files"] == "4"
    assert info["size"] == human_bytes(usage.bytes)
    assert info["logmel"] == human_bytes(usage.by_namespace["logmel"])
    assert info["embeddings"] == human_bytes(usage.by_namespace["embeddings"])
    assert info["cap"].startswith("2.0 GB")


def test_default_folder_and_cap_come_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STETHOSCOPE_CACHE", str(tmp_path / "nothing-yet"))
    monkeypatch.setenv("STETHOSCOPE_CACHE_MAX_GB", "0.5")
    info = _info(capsys)
    assert info["folder"] == f"{tmp_path / 'nothing-yet'} (not created yet)"
    assert (
        info["files"] == "0"
        and info["size"] == "0 B"
        and info["logmel"] == info["embeddings"] == "0 B"
    )
    assert info["cap"].startswith("500.0 MB")


def test_clear_frees_every_feature_and_keeps_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "cache"
    _fill(root)
    size = cache_usage(root).bytes
    assert main(["cache", "clear", "--cache", str(root), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"cleared {root}: 4 files, {human_bytes(size)} freed"
    assert cache_usage(root).files == 0
    assert (root / "weights" / "mn04_as_mAP_432.pt").read_bytes() == b"weights"


def test_bad_cap_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STETHOSCOPE_CACHE_MAX_GB", "lots")
    assert main(["cache", "info", "--cache", str(tmp_path)]) == 2
    assert "STETHOSCOPE_CACHE_MAX_GB" in capsys.readouterr().err


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (12_345_678, "12.3 MB"),
        (2_000_000_000, "2.0 GB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text
