"""Finding, downloading and checking pretrained weight files.

Where weights live is a runtime setting, never a hyperparameter: the folders of
``RunContext.weights_dirs`` (the ``--weights-dir`` flag), then those of
``$STETHOSCOPE_WEIGHTS_DIR`` (several joined by ``os.pathsep``), then the cache folder
``~/.cache/stethoscope/weights``. A model folder records the sha256 (and official name) of the
weights it was fitted with; `find_by_sha256` finds them on any machine: the official file name
in each folder, then any file in the folders (and their sub-folders) with that sha256, then a
download from the official URL with the sha256 check (temporary file, atomic rename). Hashes
are cached by path, size and modification time (``sha256-index.json`` in the cache folder), so
a folder is hashed once. Without the file the error names it, its sha256 and where to put it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import CheckpointError
from ..fsutil import atomic_write_json

WEIGHTS_DIR_ENV = "STETHOSCOPE_WEIGHTS_DIR"
INDEX_FILE = "sha256-index.json"
MAX_INDEX_ENTRIES = 2_000  # the hash cache's bound (oldest entries dropped first)
FOLDER_WEIGHTS = "model.safetensors"  # the file that identifies a folder checkpoint (EAT)


def weights_cache_dir() -> Path:
    """``~/.cache/stethoscope/weights`` (where downloads go)."""
    return Path.home() / ".cache" / "stethoscope" / "weights"


def weights_dirs(dirs: Sequence[str | Path] = ()) -> list[Path]:
    """The folders searched, in order: ``dirs`` (the run's), ``$STETHOSCOPE_WEIGHTS_DIR``,
    the cache."""
    env = [p for p in os.environ.get(WEIGHTS_DIR_ENV, "").split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for path in [*dirs, *env, weights_cache_dir()]:
        path = Path(path).expanduser()
        if path not in out:
            out.append(path)
    return out


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def candidate_paths(
    file_name: str, weights_path: str | Path | None = None, dirs: Sequence[str | Path] = ()
) -> list[Path]:
    """Where `find_weights` looks, in order: the explicit path, then ``file_name`` in each
    of `weights_dirs`."""
    paths = [Path(weights_path).expanduser()] if weights_path is not None else []
    return paths + [d / file_name for d in weights_dirs(dirs)]


def locate_local(
    name: str,
    url: str,
    what: str,
    weights_path: str | Path | None = None,
    dirs: Sequence[str | Path] = (),
) -> Path:
    """First existing candidate for a file or folder that is never downloaded automatically
    (model-hub checkpoints); `CheckpointError` naming where to put it otherwise."""
    for path in candidate_paths(name, weights_path, dirs):
        if path.exists():
            return path
    raise CheckpointError(
        f"{name}: weights not found; put {what} at ${WEIGHTS_DIR_ENV}/{name} (or in a "
        f"--weights-dir folder) or {weights_cache_dir() / name}; download it from {url}"
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


def find_weights(
    file_name: str,
    sha256: str | None,
    url: str | None,
    weights_path: str | Path | None = None,
    dirs: Sequence[str | Path] = (),
) -> Path:
    """Path of a verified local copy of ``file_name``, downloading it when absent.

    An explicit ``weights_path`` that does not exist is an error (never silently replaced
    by another copy). Downloads go to `weights_cache_dir`.
    """
    explicit = Path(weights_path).expanduser() if weights_path is not None else None
    if explicit is not None and not explicit.is_file():
        raise CheckpointError(
            f"{explicit}: weight file not found (given explicitly as weights_path)"
        )
    for path in candidate_paths(file_name, weights_path, dirs):
        if path.is_file():
            verify_sha256(path, sha256)
            return path
    if url is None:
        raise CheckpointError(f"{file_name}: weight file not found; {_hint(file_name, None)}")
    return _download_checked(file_name, sha256, url)


def find_by_sha256(
    sha256: str,
    file_name: str,
    dirs: Sequence[str | Path] = (),
    hint: str | Path | None = None,
    url: str | None = None,
) -> Path:
    """A local file whose sha256 is ``sha256``: ``file_name`` in each of `weights_dirs`, the
    ``hint`` (a path an older model folder recorded; ignored when absent or different), any
    file in the folders or their sub-folders, else a download from ``url`` (checked).

    A folder checkpoint (``file_name`` a folder) is identified by its ``model.safetensors``,
    which is what is returned. `CheckpointError` naming the file and sha256 when none matches."""
    index = _HashIndex()
    try:
        for path in _candidates(file_name, dirs, hint):
            if index.sha256(path) == sha256:
                return path
    finally:
        index.save()
    if url is not None:
        return _download_checked(file_name, sha256, url)
    raise CheckpointError(
        f"{file_name} (sha256 {sha256}): weight file not found in "
        f"{', '.join(map(str, weights_dirs(dirs)))}; {_hint(file_name, None)} "
        "(any file name: it is found by its sha256)"
    )


def _candidates(
    file_name: str, dirs: Sequence[str | Path], hint: str | Path | None
) -> Iterator[Path]:
    """Files that may hold the weights, likeliest first, each once."""
    seen: set[Path] = set()
    named = [d / file_name for d in weights_dirs(dirs)]
    hinted = [Path(hint).expanduser()] if hint else []
    scanned = (f for d in weights_dirs(dirs) for f in _files_under(d))
    for path in (*named, *hinted):
        path = path / FOLDER_WEIGHTS if path.is_dir() else path
        if path.is_file() and path not in seen:
            seen.add(path)
            yield path
    for path in scanned:
        if path not in seen:
            seen.add(path)
            yield path


def _files_under(folder: Path) -> Iterator[Path]:
    """Regular files in ``folder`` and its direct sub-folders (hidden ones and the index
    left out)."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            try:
                inner = sorted(entry.iterdir())
            except OSError:
                continue
            yield from (f for f in inner if f.is_file() and not f.name.startswith("."))
        elif entry.is_file() and entry.name != INDEX_FILE:
            yield entry


class _HashIndex:
    """sha256 of files cached by (path, size, mtime) in ``sha256-index.json`` of the cache
    folder; an unreadable or unwritable index only costs re-hashing."""

    def __init__(self) -> None:
        self.path = weights_cache_dir() / INDEX_FILE
        self.changed = False
        try:
            loaded = json.loads(self.path.read_text())
            self.entries: dict[str, list] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.entries = {}

    def sha256(self, path: Path) -> str | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
        entry = self.entries.get(key)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == stamp:
            return str(entry[2])
        try:
            digest = sha256_of(path)
        except OSError:
            return None
        self.entries.pop(key, None)
        self.entries[key] = [*stamp, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        keep = dict(list(self.entries.items())[-MAX_INDEX_ENTRIES:])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, keep)
        except OSError:
            pass  # a read-only home: the next run hashes again


def _hint(file_name: str, url: str | None) -> str:
    return (
        f"put {file_name} in a folder given by --weights-dir DIR or ${WEIGHTS_DIR_ENV}, or at "
        f"{weights_cache_dir() / file_name}" + (f"; download it from {url}" if url else "")
    )


def _download_checked(file_name: str, sha256: str | None, url: str) -> Path:
    """Download ``url`` into the cache folder as ``file_name``: temporary file, sha256 check,
    atomic rename."""
    target = weights_cache_dir() / file_name
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
        named = f"{file_name} (sha256 {sha256})" if sha256 else file_name
        raise CheckpointError(
            f"{named}: weight file not found and download failed ({err}); {_hint(file_name, url)}"
        ) from err
    return target
