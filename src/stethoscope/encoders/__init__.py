"""Frozen waveform encoders: a registry by name and cached clip embeddings.

| name | dim | weights |
| --- | --- | --- |
| ``efficientat_mn04`` (default) | 384 | ``mn04_as_mAP_432.pt`` (downloaded + sha256-checked) |
| ``efficientat_mn04_hidden`` | 512 | same file, classifier hidden layer |
| ``eat_base`` | 768 | user's local ``EAT-base_epoch30_pretrain`` folder (HF safetensors) |
| ``beats_iter3`` | 768 | user's local ``BEATs_iter3.pt`` |
| ``random`` | 384 | none: randomly initialised mn04, seed 0 (``weights == "random"``) |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.clip import Clip
from ..errors import CheckpointError, ConfigError
from ..features.cache import FeatureCache
from ..features.extract import Decoded, FeatureRequest, iter_decoded
from .base import Encoder
from .beats import BEATS_URL
from .eat import EAT_URL
from .efficientat import MN04_SHA256, MN04_URL
from .weights import candidate_paths, find_by_sha256, locate_local

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder: ``weights_file`` its official weight file (or folder) name, ``sha256`` the
    published hash where there is one (such files are downloaded from ``url`` when absent)."""

    name: str
    dim: int
    weights_file: str | None
    factory: Callable[..., Encoder]
    description: str
    url: str | None = None
    sha256: str | None = None


def _mn04(layer: str) -> Callable[..., Encoder]:
    def build(device: str = "cpu", weights_path: str | None = None, **options: Any) -> Encoder:
        from .efficientat import EfficientATEncoder

        enc = EfficientATEncoder(device=device, weights_path=weights_path, layer=layer, **options)
        if layer == "hidden":
            enc.name = "efficientat_mn04_hidden"  # type: ignore[misc]
        return enc

    return build


def _random(device: str = "cpu", weights_path: str | None = None, **options: Any) -> Encoder:
    from .efficientat import EfficientATEncoder

    if weights_path not in (None, "random"):
        raise ConfigError("the 'random' encoder takes no weights_path")
    enc = EfficientATEncoder(
        device=device, pretrained=False, seed=options.pop("seed", 0), **options
    )
    enc.name = "random"  # type: ignore[misc]
    return enc


def _eat(device: str = "cpu", weights_path: str | None = None, **options: Any) -> Encoder:
    from .eat import EATEncoder

    return EATEncoder(device=device, weights_path=weights_path, **options)


def _beats(device: str = "cpu", weights_path: str | None = None, **options: Any) -> Encoder:
    from .beats import BEATsEncoder

    return BEATsEncoder(device=device, weights_path=weights_path, **options)


ENCODERS: dict[str, EncoderSpec] = {
    s.name: s
    for s in (
        EncoderSpec(
            "efficientat_mn04",
            384,
            "mn04_as_mAP_432.pt",
            _mn04("pooled"),
            "EfficientAT mn04 (AudioSet MobileNetV3), pooled 384-d feature",
            MN04_URL,
            MN04_SHA256,
        ),
        EncoderSpec(
            "efficientat_mn04_hidden",
            512,
            "mn04_as_mAP_432.pt",
            _mn04("hidden"),
            "EfficientAT mn04, 512-d classifier hidden layer",
            MN04_URL,
            MN04_SHA256,
        ),
        EncoderSpec(
            "eat_base",
            768,
            "EAT-base_epoch30_pretrain",
            _eat,
            "EAT base (data2vec 2.0 audio), CLS token; local checkpoint only",
            EAT_URL,
        ),
        EncoderSpec(
            "beats_iter3",
            768,
            "BEATs_iter3.pt",
            _beats,
            "BEATs iter3, mean over patches; local checkpoint only",
            BEATS_URL,
        ),
        EncoderSpec(
            "random",
            384,
            None,
            _random,
            "randomly initialised mn04 (seed 0): a no-pretraining control",
        ),
    )
}


def get_encoder(
    name: str, device: str = "cpu", weights_path: str | None = None, **options: Any
) -> Encoder:
    """Build a frozen encoder by name (see the module table). ``weights_path="random"``
    gives EAT / BEATs random weights (architecture tests)."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name].factory(device=device, weights_path=weights_path, **options)


def list_encoders() -> list[dict[str, Any]]:
    """Name, dim, weight file name and whether that file is present locally (no download)."""
    rows = []
    for spec in ENCODERS.values():
        present = spec.weights_file is None or any(
            p.exists() for p in candidate_paths(spec.weights_file)
        )
        rows.append(
            {
                "name": spec.name,
                "dim": spec.dim,
                "weights_file": spec.weights_file,
                "weights_present": present,
                "description": spec.description,
            }
        )
    return rows


def encoder_tag(encoder: Encoder) -> dict[str, Any]:
    """What identifies an encoder's outputs: name, weights kind and file sha256, dim."""
    return {
        "encoder": encoder.name,
        "weights": encoder.weights,
        "weights_sha256": getattr(encoder, "weights_sha256", encoder.weights),
        "dim": encoder.dim,
    }


def saved_encoder_tag(tag: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``encoder`` and ``encoder_weights*`` keys a system saves for ``tag`` (an
    `encoder_tag`; all None when it used no encoder), read back by `restore_encoder_tag`. The
    official weights file name goes with the sha256, so another machine can find or fetch it."""
    tag = tag or {}
    name = tag.get("encoder")
    return {
        "encoder": name,
        "encoder_weights": tag.get("weights"),
        "encoder_weights_sha256": tag.get("weights_sha256"),
        "encoder_weights_file": ENCODERS[name].weights_file if name else None,
    }


def restore_encoder_tag(
    owner: str, configured: str, state: dict[str, Any]
) -> dict[str, Any] | None:
    """The `encoder_tag` a saved system recorded (its ``encoder`` and ``encoder_weights*`` keys),
    None when it recorded no weights hash; a clear error when ``owner`` was saved with another
    encoder than the ``configured`` one."""
    if state.get("encoder") not in (None, configured):
        raise CheckpointError(
            f"{owner}: saved with encoder {state['encoder']!r}, configured {configured!r}"
        )
    if not state.get("encoder_weights_sha256"):
        return None
    return {
        "encoder": state["encoder"],
        "weights": state.get("encoder_weights"),
        "weights_sha256": state["encoder_weights_sha256"],
    }


def locate_encoder_weights(
    name: str,
    sha256: str | None = None,
    dirs: Sequence[str | Path] = (),
    hint: str | Path | None = None,
) -> Path | None:
    """The local weights of encoder ``name`` (None for the random encoder), searched in the run's
    ``dirs``, ``$STETHOSCOPE_WEIGHTS_DIR`` and the cache (`weights.weights_dirs`).

    ``sha256`` (what a saved model was fitted with) finds any file with that hash, whatever its
    name, or downloads the official file when the hash is its published one; without it the
    official file is found by name (published hash checked, downloaded when absent)."""
    spec = ENCODERS.get(name)
    if spec is None:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    if spec.weights_file is None or sha256 == "random":
        return None
    wanted = sha256 or spec.sha256
    if wanted is None:  # a local-only checkpoint at its fit: by name
        return locate_local(spec.weights_file, spec.url or "", "the official checkpoint", dirs=dirs)
    url = spec.url if wanted == spec.sha256 else None
    return find_by_sha256(wanted, spec.weights_file, dirs, hint, url)


def get_fitted_encoder(
    name: str,
    fitted_tag: dict[str, Any] | None,
    device: str = "cpu",
    dirs: Sequence[str | Path] = (),
    hint: str | Path | None = None,
) -> Encoder:
    """The encoder with the weights a saved model was fitted with (``fitted_tag`` from
    `encoder_tag` at fit time; None before fitting: the official weights), found by sha256
    (`locate_encoder_weights`; ``hint``: a path an older model folder recorded)."""
    sha = fitted_tag.get("weights_sha256") if fitted_tag else None
    path = locate_encoder_weights(name, sha, dirs, hint)
    encoder = get_encoder(name, device=device, weights_path=None if path is None else str(path))
    sha = encoder_tag(encoder)["weights_sha256"]
    if fitted_tag is not None and sha != fitted_tag["weights_sha256"]:
        raise CheckpointError(
            f"encoder {name!r}: weights {sha} differ from the ones this model was fitted with "
            f"({fitted_tag['weights_sha256']})"
        )
    return encoder


def fitted_encoder_on(
    cached: tuple[str, Encoder] | None,
    name: str,
    fitted_tag: dict[str, Any] | None,
    device: str,
    dirs: Sequence[str | Path] = (),
    hint: str | Path | None = None,
) -> tuple[str, Encoder]:
    """A system's kept (device, encoder) pair: ``cached`` when it is on ``device``, else
    `get_fitted_encoder` there (loading and checking weights is slow, so a system keeps it)."""
    if cached is not None and cached[0] == device:
        return cached
    return device, get_fitted_encoder(name, fitted_tag, device, dirs, hint)


def embed_decoded(
    encoder: Encoder, decoded: Decoded, cache_dir: str | Path | None = None, batch_size: int = 16
) -> np.ndarray:
    """(n, dim) float32 embeddings of a decoded chunk's waveforms, cached per content key +
    encoder + weights sha (clips that never were files, key "", are never cached)."""
    assert decoded.waves is not None, "the chunk was decoded without waveforms"
    cache = (
        FeatureCache(cache_dir, "embeddings", encoder_tag(encoder))
        if cache_dir is not None
        else None
    )
    out = np.zeros((len(decoded), encoder.dim), np.float32)
    todo = []
    for i, key in enumerate(decoded.keys):
        hit = cache.get(key) if cache and key else None
        if hit is not None and hit.shape == (encoder.dim,):
            out[i] = hit
        else:
            todo.append(i)
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        emb = encoder.embed([decoded.waves[i] for i in part], SAMPLE_RATE)
        for i, row in zip(part, emb, strict=True):
            out[i] = row
            if cache and decoded.keys[i]:
                cache.put(decoded.keys[i], np.ascontiguousarray(row, np.float32))
    return out


def embed_clips(
    encoder: Encoder,
    clips: Sequence[Clip],
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """(n, dim) float32 embeddings of clips, each file decoded once (see `embed_decoded`)."""
    parts = [
        embed_decoded(encoder, d, cache_dir)
        for d in iter_decoded(clips, FeatureRequest(wave=True), cache_dir, progress)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)


__all__ = [
    "ENCODERS",
    "Encoder",
    "embed_clips",
    "embed_decoded",
    "encoder_tag",
    "fitted_encoder_on",
    "get_encoder",
    "list_encoders",
    "locate_encoder_weights",
    "restore_encoder_tag",
    "saved_encoder_tag",
]
