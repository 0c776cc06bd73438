"""Stethoscope: unsupervised anomalous sound detection for machine condition monitoring.

from stethoscope import RunContext, scan, get_system
clips = scan("dev_data/fan")
ctx = RunContext(seed=0)
system = get_system("dcase_ae").fit([c for c in clips if c.split == "train"], ctx=ctx)
scores = system.score([c for c in clips if c.split == "test"], ctx)
"""

import os

# Before torch loads (and its OpenMP runtime, which reads this once; the modules behind the
# public names below import it): idle
# OpenMP threads sleep instead of spin-waiting. With the default active wait, two torch
# processes sharing 2 cores ran 12x slower; PASSIVE made it ~1x. A value the user set wins.
# (Effective when stethoscope is imported before torch, as the `stethoscope` command does.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = [
    "Clip",
    "RunContext",
    "get_system",
    "list_systems",
    "load_audio",
    "load_system",
    "make_toy_dataset",
    "scan",
]

# The public names load on first use, so that `stethoscope.onnx_runtime` (numpy + onnxruntime
# only) can be imported on a box without torch.
_HOMES = {
    "Clip": "data",
    "load_audio": "data",
    "make_toy_dataset": "data",
    "scan": "data",
    "RunContext": "engine",
    "get_system": "systems",
    "list_systems": "systems",
    "load_system": "systems",
}


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
