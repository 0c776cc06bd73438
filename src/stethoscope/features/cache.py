"""The on-disk feature cache: arrays keyed by file content + parameters, capped in size.

Layout: ``ROOT/<namespace>/<params tag>/<key[:2]>/<key>.npy`` where the key is a sha256 of
the file's bytes (and channel), so a renamed or copied file hits and an edited one misses.
A hit refreshes the entry's modification time; when the cache outgrows its cap
(``$STETHOSCOPE_CACHE_MAX_GB``, default 2), the least recently used entries are removed
until it is under 90% of the cap. `stethoscope cache info|clear` shows and empties it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import env_number

DEFAULT_MAX_GB = 2.0
_written_since_check: dict[Path, int] = {}


def default_cache_dir() -> Path:
    """``$STETHOSCOPE_CACHE`` or ``~/.cache/stethoscope``."""
    return Path(os.environ.get("STETHOSCOPE_CACHE", Path.home() / ".cache" / "stethoscope"))


def max_cache_bytes() -> int:
    """The cap: ``$STETHOSCOPE_CACHE_MAX_GB`` gigabytes (default 2)."""
    return int(
        env_number("STETHOSCOPE_CACHE_MAX_GB", DEFAULT_MAX_GB, strict=True, unit=" GB") * 1e9
    )


class FeatureCache:
    """Arrays stored as .npy under a key made of the file's content hash and the parameters."""

    def __init__(self, root: str | Path, namespace: str, params: dict) -> None:
        tag = hashlib.blake2b(
            json.dumps(params, sort_keys=True).encode(), digest_size=8
        ).hexdigest()
        self.root = Path(root)
        self.dir = self.root / namespace / tag
        self.params = params

    def path(self, content_key: str) -> Path:
        return self.dir / content_key[:2] / f"{content_key}.npy"

    def get(self, content_key: str) -> np.ndarray | None:
        p = self.path(content_key)
        try:
            array = np.load(p)
            os.utime(p)  # least-recently-used eviction reads this time
            return array
        except (ValueError, OSError, EOFError):  # missing, or corrupt: recomputed, never trusted
            return None

    def put(self, content_key: str, array: np.ndarray) -> None:
        p = self.path(content_key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, p)
        cap = max_cache_bytes()
        written = _written_since_check.get(self.root, 0) + p.stat().st_size
        if (
            written > cap // 20 or self.root not in _written_since_check
        ):  # check every 5% of the cap
            evict(self.root, cap)
            written = 0
        _written_since_check[self.root] = written


@dataclass(frozen=True)
class CacheUsage:
    files: int
    bytes: int
    by_namespace: dict[str, int]


def _entries(root: Path) -> list[tuple[float, int, Path]]:
    out = []
    for p in root.glob("*/*/*/*.npy"):
        try:
            st = p.stat()
        except OSError:  # removed meanwhile by another process
            continue
        out.append((st.st_mtime, st.st_size, p))
    return out


def cache_usage(root: str | Path) -> CacheUsage:
    """Files and bytes in the cache, per namespace (``logmel``, ``embeddings``, ``wavestats``)."""
    entries = _entries(Path(root))
    by_ns: dict[str, int] = {}
    for _, size, p in entries:
        ns = p.relative_to(root).parts[0]
        by_ns[ns] = by_ns.get(ns, 0) + size
    return CacheUsage(len(entries), sum(size for _, size, _ in entries), by_ns)


def evict(root: str | Path, max_bytes: int, keep_fraction: float = 0.9) -> int:
    """Remove the least recently used entries until the cache holds at most ``keep_fraction``
    of ``max_bytes`` (only when it is over ``max_bytes``); returns the bytes freed."""
    entries = _entries(Path(root))
    total = sum(size for _, size, _ in entries)
    if total <= max_bytes:
        return 0
    freed = 0
    for _, size, p in sorted(entries):
        if total - freed <= keep_fraction * max_bytes:
            break
        try:
            p.unlink()
            freed += size
        except OSError:
            pass
    return freed


def clear_cache(root: str | Path) -> int:
    """Remove every cached feature under ``root``; returns the bytes freed."""
    root = Path(root)
    usage = cache_usage(root)
    for child in ("logmel", "embeddings", "wavestats"):
        shutil.rmtree(root / child, ignore_errors=True)
    return usage.bytes
