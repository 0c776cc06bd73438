"""Finding, downloading and checking pretrained weight files.

Search order for a weight file: an explicit path (config / argument), then
``$STETHOSCOPE_WEIGHTS_DIR/<official file name>``, then the cache folder
``~/.cache/stethoscope/weights/<official file name>``. A file that is found must match its
published sha256. When none is found the file is downloaded from its official URL into the
cache folder (temporary file, sha256 check, atomic rename); without network the error says
exactly where to put the file and where to get it.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from ..errors import CheckpointError

WEIGHTS_DIR_ENV = "STETHOSCOPE_WEIGHTS_DIR"


def weights_cache_dir() -> Path:
    """``~/.cache/stethoscope/weights`` (where downloads go)."""
    return Path.home() / ".cache" / "stethoscope" / "weights"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def candidate_paths(file_name: str, weights_path: str | Path | None = None) -> list[Path]:
    """Where `find_weights` looks, in order."""
    paths = []
    if weights_path is not None:
        paths.append(Path(weights_path).expanduser())
    if os.environ.get(WEIGHTS_DIR_ENV):
        paths.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser() / file_name)
    paths.append(weights_cache_dir() / file_name)
    return paths


def locate_local(name: str, url: str, what: str, weights_path: str | Path | None = None) -> Path:
    """First existing candidate for a file or folder that is never downloaded automatically
    (model-hub checkpoints); `CheckpointError` naming where to put it otherwise."""
    for path in candidate_paths(name, weights_path):
        if path.exists():
            return path
    raise CheckpointError(
        f"{name}: weights not found; put {what} at ${WEIGHTS_DIR_ENV}/{name} or {weights_cache_dir() / name}, "
        f"or pass weights_path=<path>; download it from {url}"
    )


def verify_sha256(path: Path, sha256: str | None) -> None:
    """Raise `CheckpointError` when ``path`` does not have the expected sha256."""
    if sha256 is None:
        return
    actual = sha256_of(path)
    if actual != sha256:
        raise CheckpointError(
            f"{path}: sha256 mismatch (expected {sha256}, found {actual}); the file is corrupt, "
            "truncated or a different release: delete it and download it again"
        )


def download(url: str, dest: Path) -> None:
    """Fetch ``url`` to ``dest`` (plain urllib); raises OSError / URLError on failure."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as handle:
        while block := response.read(1 << 20):
            handle.write(block)


def find_weights(file_name: str, sha256: str | None, url: str | None,
                 weights_path: str | Path | None = None) -> Path:
    """Path of a verified local copy of ``file_name``, downloading it when absent.

    An explicit ``weights_path`` that does not exist is an error (never silently replaced
    by another copy). Downloads go to `weights_cache_dir`.
    """
    explicit = Path(weights_path).expanduser() if weights_path is not None else None
    if explicit is not None and not explicit.is_file():
        raise CheckpointError(f"{explicit}: weight file not found (given explicitly as weights_path)")
    for path in candidate_paths(file_name, weights_path):
        if path.is_file():
            verify_sha256(path, sha256)
            return path
    target = weights_cache_dir() / file_name
    hint = (
        f"put {file_name} in ${WEIGHTS_DIR_ENV} or at {target}, or pass weights_path=<file>"
        + (f"; download it from {url}" if url else "")
    )
    if url is None:
        raise CheckpointError(f"{file_name}: weight file not found; {hint}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{file_name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        download(url, tmp)
        verify_sha256(tmp, sha256)
        os.replace(tmp, target)
    except CheckpointError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:  # no network, HTTP error, disk full: say where to put the file
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{file_name}: weight file not found and download failed ({err}); {hint}") from err
    return target
