"""The feature cache: content keys, corrupt entries, least-recently-used eviction, clear."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from stethoscope.errors import ConfigError
from stethoscope.features.cache import (
    FeatureCache,
    cache_usage,
    clear_cache,
    evict,
    max_cache_bytes,
)


def _fill(cache: FeatureCache, n: int, size: int = 1000) -> list[str]:
    keys = [f"{i:032x}-c0" for i in range(n)]
    for i, key in enumerate(keys):
        cache.put(key, np.zeros(size // 4, np.float32))
        os.utime(cache.path(key), (1000.0 + i, 1000.0 + i))  # put order = age order
    return keys


def test_round_trip_and_corrupt_entry_is_a_miss(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "logmel", {"n_mels": 128})
    cache.put("ab" * 16, np.arange(5, dtype=np.float32))
    np.testing.assert_array_equal(cache.get("ab" * 16), np.arange(5, dtype=np.float32))
    cache.path("ab" * 16).write_bytes(b"\x93NUMPY garbage")
    assert cache.get("ab" * 16) is None and cache.get("cd" * 16) is None


def test_other_parameters_never_share_entries(tmp_path: Path) -> None:
    a, b = (
        FeatureCache(tmp_path, "logmel", {"n_mels": 128}),
        FeatureCache(tmp_path, "logmel", {"n_mels": 64}),
    )
    a.put("ab" * 16, np.ones(3, np.float32))
    assert b.get("ab" * 16) is None


def test_eviction_removes_least_recently_used_first(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "logmel", {})
    keys = _fill(cache, 10)
    cache.get(keys[0])  # used just now: survives although it is the oldest write
    per_file = cache.path(keys[1]).stat().st_size
    freed = evict(tmp_path, max_bytes=6 * per_file)
    left = [k for k in keys if cache.path(k).exists()]
    assert keys[0] in left and keys[1] not in left
    assert (
        cache_usage(tmp_path).bytes <= 0.9 * 6 * per_file and freed == (10 - len(left)) * per_file
    )
    assert evict(tmp_path, max_bytes=100 * per_file) == 0  # under the cap: nothing goes


def test_writes_keep_the_cache_under_its_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STETHOSCOPE_CACHE_MAX_GB", str(20_000 / 1e9))  # 20 kB
    cache = FeatureCache(tmp_path, "embeddings", {})
    for i in range(60):
        cache.put(f"{i:032x}-c0", np.zeros(250, np.float32))  # ~1.1 kB each
        time.sleep(0.001)
    assert cache_usage(tmp_path).bytes <= 20_000 + 2_000  # at most one check interval over the cap


def test_usage_and_clear(tmp_path: Path) -> None:
    _fill(FeatureCache(tmp_path, "logmel", {}), 3)
    _fill(FeatureCache(tmp_path, "embeddings", {}), 2)
    usage = cache_usage(tmp_path)
    assert usage.files == 5 and set(usage.by_namespace) == {"logmel", "embeddings"}
    assert clear_cache(tmp_path) == usage.bytes and cache_usage(tmp_path).files == 0


@pytest.mark.parametrize("raw", ["0", "-1", "lots"])
def test_bad_cap_is_a_clear_error(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STETHOSCOPE_CACHE_MAX_GB", raw)
    with pytest.raises(ConfigError, match="STETHOSCOPE_CACHE_MAX_GB"):
        max_cache_bytes()
