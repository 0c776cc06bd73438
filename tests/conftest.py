"""Shared fixtures: where ../shared is, tiny audio writers, a small toy-factory data set, a
headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(1)  # tiny models: one thread is as fast and immune to oversubscription
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def shared_dir() -> Path | None:
    """``$STETHOSCOPE_SHARED`` or ``../shared`` beside the repository root; None when absent."""
    env = os.environ.get("STETHOSCOPE_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return path if path.is_dir() else None


@pytest.fixture
def shared() -> Path:
    path = shared_dir()
    if path is None:
        pytest.skip("../shared is not present")
    return path


@pytest.fixture
def real_data(shared: Path) -> Path:
    path = shared / "data" / "real"
    if not path.is_dir():
        pytest.skip("../shared/data/real is not present")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep every test's feature cache out of the user's home."""
    monkeypatch.setenv("STETHOSCOPE_CACHE", str(tmp_path_factory.getbasetemp() / "feature-cache"))


def write_wav(
    path: Path, wave: np.ndarray, sample_rate: int = 16_000, subtype: str | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sample_rate, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small two-machine toy-factory data set (4 s clips) shared by the end-to-end tests."""
    from stethoscope.data.toy_factory import make_toy_dataset

    return make_toy_dataset(
        tmp_path_factory.mktemp("toy"), n_train=12, n_test=12, seconds=4.0, seed=0
    )


def _chromium() -> str | None:
    found = (
        os.environ.get("STETHOSCOPE_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    return found if found and Path(found).exists() else None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, driven by Playwright, which cannot download browsers here);
    skipped, saying why, only when none is installed (``apt-get install chromium``, or point
    ``STETHOSCOPE_CHROMIUM`` at a Chromium/Chrome binary). Playwright comes with the dev extra."""
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium installed (apt-get install chromium, or set STETHOSCOPE_CHROMIUM)")
    # the dev extra installs playwright; missing = a failure
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
