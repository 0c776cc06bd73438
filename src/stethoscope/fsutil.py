"""Crash-safe writes: a file or a whole folder is replaced by its new version in one step.

A killed process leaves either the old or the new content at the final path, never half of it,
plus at most some hidden ``.NAME.tmp-<pid>-<random>`` / ``.NAME.old-<pid>`` siblings that the
next write to the same path removes (or, for ``old``, puts back) once their writer is dead.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # Linux renameat2 flag
_RENAME_SWAP = 2  # macOS renamex_np flag
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}

# Staged and old siblings of this process's writes still in progress: the PID in their name is
# alive (ours), yet only siblings left by an earlier crashed block of this PID are stale.
_ACTIVE: set[Path] = set()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a file so that readers see the old or the new content, never half of it.

    Permissions are those of a plainly created file (0666 less the umask), not mkstemp's 0600:
    results, models and reports are meant to be shared."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a staging folder that replaces ``path`` in one step, only if the block succeeds.

    Before staging, a folder lost by a crashed earlier write is recovered and the stale
    siblings of dead writers are removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(path)
    for sibling, _, pid in list(_siblings(path)):
        if _is_stale(sibling, pid):
            shutil.rmtree(sibling, ignore_errors=True)
    staged = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(staged)  # 0777 less the umask, unlike mkdtemp's private 0700
    _ACTIVE.add(staged.absolute())
    try:
        yield staged
        _fsync_tree(staged)
        _install(staged, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(
            staged, ignore_errors=True
        )  # the new folder on failure, the old one on success
        _ACTIVE.discard(staged.absolute())


def recover_directory(path: str | Path) -> None:
    """Put back the old folder if a writer died between moving it away and moving the new one in.

    Only acts when ``path`` is missing; siblings of a writer still running are left to it."""
    path = Path(path)
    if os.path.lexists(path):
        return
    olds = [
        sibling
        for sibling, kind, pid in _siblings(path)
        if kind == "old" and _is_stale(sibling, pid)
    ]
    if not olds:
        return
    try:
        os.rename(max(olds, key=lambda p: p.stat().st_ctime), path)
    except OSError:
        if not os.path.lexists(path):  # lost only to a concurrent recovery or write
            raise


def _siblings(path: Path) -> Iterator[tuple[Path, str, int]]:
    """This module's hidden siblings of ``path``: (sibling, ``tmp`` or ``old``, writer's PID)."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:tmp-(\d+)-[0-9a-f]+|old-(\d+))")
    for sibling in path.parent.iterdir():
        match = pattern.fullmatch(sibling.name)
        if match:
            tmp_pid, old_pid = match.groups()
            yield (sibling, "tmp", int(tmp_pid)) if tmp_pid else (sibling, "old", int(old_pid))


def _is_stale(sibling: Path, pid: int) -> bool:
    """Whether the sibling's writer is gone (or is this process, outside any write in progress)."""
    if sibling.absolute() in _ACTIVE:
        return False
    return pid == os.getpid() or not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT: keep every sibling there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def _install(staged: Path, path: Path) -> None:
    """Move ``staged`` to ``path``; the old content of ``path``, if any, ends up in ``staged``."""
    if not os.path.lexists(path):
        os.rename(staged, path)
    elif not _exchange(staged, path):
        _swap_by_renames(staged, path)


def _swap_by_renames(staged: Path, path: Path) -> None:
    """Two renames where no exchange exists; `recover_directory` repairs a death in between.

    The old folder is renamed to a ``tmp`` name before deletion, so that an ``old`` sibling is
    always complete."""
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    _ACTIVE.add(old.absolute())
    try:
        os.rename(path, old)
        try:
            os.rename(staged, path)
        except BaseException:
            os.rename(old, path)
            raise
        os.rename(old, staged)
    finally:
        _ACTIVE.discard(old.absolute())


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; False where the OS or the filesystem cannot."""
    if _SWAP is None:
        return False
    if _SWAP(os.fsencode(a), os.fsencode(b)) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _load_swap() -> Callable[[bytes, bytes], int] | None:
    """The C library's directory exchange: ``renameat2`` (Linux) or ``renamex_np`` (macOS)."""
    if sys.platform.startswith("linux"):
        name, argtypes = (
            "renameat2",
            [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint],
        )
    elif sys.platform == "darwin":
        name, argtypes = "renamex_np", [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
    else:
        return None
    function = getattr(ctypes.CDLL(None, use_errno=True), name, None)
    if function is None:  # glibc < 2.28, or a libc without it
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    if name == "renameat2":
        return lambda a, b: function(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE)
    return lambda a, b: function(a, b, _RENAME_SWAP)


_SWAP = _load_swap()


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` so that a power cut cannot empty them later."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # folders cannot be opened for fsync there
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
