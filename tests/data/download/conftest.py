"""Fixtures of the download tests: a fresh local server holding the test archives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .fixtures import GROUND_TRUTH, GT_PATH, Server, dcase2025_archives


@pytest.fixture(scope="session")
def archives() -> dict[str, bytes]:
    return {**dcase2025_archives(), GT_PATH: GROUND_TRUTH}


@pytest.fixture
def server(archives: dict[str, bytes]) -> Iterator[Server]:
    srv = Server()
    srv.files.update(archives)
    yield srv
    srv.close()


@pytest.fixture
def registry(tmp_path: Path, archives: dict[str, bytes]) -> Path:
    from .fixtures import write_registry

    return write_registry(tmp_path / "registry.yaml", archives)
