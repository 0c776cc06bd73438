"""Where a fleet's recordings are: local files and folders, or URIs that ``pyarrow.fs`` opens
(``s3://``, ``gs://``, ``hdfs://``, ``file://``) or, for other schemes, fsspec; and which model
scores each file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..data.policy import audio_paths
from ..data.quality import is_audio_name, is_hidden
from ..errors import ConfigError, LayoutError


def is_uri(path: str) -> bool:
    """``scheme://...`` (a Windows drive letter is not a scheme)."""
    scheme, sep, _ = str(path).partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.replace("+", "").isalnum()


def resolve_filesystem(uri: str, filesystem: Any = None) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) of ``uri``: ``filesystem`` when given (a pyarrow or
    fsspec one; ``uri`` is then its path), else ``pyarrow.fs`` by scheme, else fsspec's."""
    import pyarrow.fs as pafs

    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):  # an fsspec filesystem
            filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
        return filesystem, uri
    try:
        return pafs.FileSystem.from_uri(uri)
    except (
        Exception
    ) as arrow_err:  # pyarrow raises ArrowInvalid / ArrowNotImplementedError per scheme
        try:
            import fsspec
        except ImportError:
            raise ConfigError(
                f"{uri}: pyarrow cannot open this URI ({arrow_err}) and fsspec is not installed"
            ) from None
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as err:
            raise ConfigError(
                f"{uri}: neither pyarrow nor fsspec can open this URI ({arrow_err}; {err})"
            ) from None
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _list_remote(uri: str, filesystem: Any) -> list[str]:
    """The audio files of one URI (a file, or a folder searched recursively, hidden names passed
    over)."""
    import pyarrow.fs as pafs

    fs, root = resolve_filesystem(uri, filesystem)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise LayoutError(f"{uri}: no such file or folder")
    if info.type == pafs.FileType.File:
        return [uri]
    prefix = uri[: len(uri) - len(root)] if filesystem is None and uri.endswith(root) else ""
    found = []
    for entry in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        rel = PurePosixPath(entry.path).relative_to(PurePosixPath(root)).parts
        if (
            entry.type == pafs.FileType.File
            and is_audio_name(rel[-1])
            and not any(map(is_hidden, rel))
        ):
            found.append(prefix + entry.path)
    if not found:
        raise LayoutError(f"{uri}: folder holds no audio files (.wav, .flac, .ogg, .mp3, ...)")
    return sorted(found)


def list_inputs(paths: Sequence[str | Path], filesystem: Any = None) -> list[str]:
    """Every audio file named by ``paths``: local files and folders as ``score`` finds them (the
    active audio policy judges refused entries), URIs (or every path, with ``filesystem``) listed
    through that filesystem."""
    out: list[str] = []
    for path in map(str, paths):
        if filesystem is not None or is_uri(path):
            out += _list_remote(path, filesystem)
        else:
            out += [str(p) for p in audio_paths([path])]
    return out


def machine_of(path: str, machines: Sequence[str]) -> str | None:
    """The machine type of a file: the only one when there is one model, else the nearest
    enclosing folder named like a model (``plant/fan/m07/clip.wav`` -> ``fan``); None if none is."""
    if len(machines) == 1:
        return machines[0]
    known = set(machines)
    tail = str(path).partition("://")[2] if is_uri(str(path)) else str(path)
    return next(
        (
            part
            for part in reversed(PurePosixPath(tail.replace("\\", "/")).parts[:-1])
            if part in known
        ),
        None,
    )


def assign_models(files: Sequence[str], models: Mapping[str, Path]) -> list[str]:
    """The machine type of every file (`machine_of`); a `ConfigError` naming the first file that
    no model claims, and the models there are."""
    machines = list(models)
    out = []
    for path in files:
        machine = machine_of(path, machines)
        if machine is None:
            raise ConfigError(
                f"{path}: no enclosing folder is named after a model's machine type "
                f"({', '.join(machines)}); put each machine type's files under a folder of its name"
            )
        out.append(machine)
    return out
