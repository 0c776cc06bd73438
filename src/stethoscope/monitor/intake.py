"""What the folder watcher refuses to read, and how it reads the rest: a file must lie in the
watched folder (no symbolic link on the way, nothing that resolves outside it), be a regular
file and not exceed the size cap; it is opened without following a link and read up to the cap.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..data.quality import entry_problem


def refusal(root: Path, path: Path, size: int, max_bytes: int) -> str | None:
    """Why ``path`` (below the resolved folder ``root``) is not opened at all: a symbolic link
    (the file, or a folder between it and ``root``), a path that resolves outside ``root``, not
    a regular file, over ``max_bytes``; None when it may be read."""
    below = path.relative_to(root)
    for depth in range(len(below.parts), 0, -1):
        if (root / Path(*below.parts[:depth])).is_symlink():
            return (
                "a symbolic link (not followed: the watcher reads only files that lie in "
                "its folder)"
            )
    try:
        path.resolve(strict=True).relative_to(root)
    except (OSError, ValueError):
        return f"resolves outside the watched folder {root}; not read"
    problem = entry_problem(path)
    if problem is not None:
        return problem.reason
    return too_big(size, max_bytes) if size > max_bytes else None


def too_big(size: int, max_bytes: int) -> str:
    """The skip reason of a file over the ``--max-file-mb`` cap."""
    return f"{size / 2**20:.1f} MB is over the --max-file-mb {max_bytes / 2**20:g} limit; not read"


def read_capped(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` + 1 bytes of a regular file (one more says it grew past the cap),
    opened without following a symbolic link and without blocking on a FIFO swapped in since
    `refusal` looked."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path.name} is no longer a regular file")
        return handle.read(max_bytes + 1)
