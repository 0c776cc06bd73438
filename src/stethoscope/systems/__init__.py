"""Trainable systems; importing this package registers the built-in ones."""

# ruff: noqa: I001  (one import line per system: the one line adding a system touches here)
from .base import REGISTRY, System, get_system, list_systems, load_system, register
from . import dcase_ae  # noqa: F401
from . import gamma_vae  # noqa: F401
from . import ldgan  # noqa: F401
from . import embedding_knn  # noqa: F401
from . import tldiffgan  # noqa: F401
from . import ensemble  # noqa: F401
from . import aux_classifier  # noqa: F401
from . import mel_stats  # noqa: F401
from . import auto  # noqa: F401

__all__ = ["REGISTRY", "System", "get_system", "list_systems", "load_system", "register"]
