"""Stethoscope: unsupervised anomalous sound detection for machine condition monitoring.

    from stethoscope import RunContext, scan, get_system
    clips = scan("dev_data/fan")
    ctx = RunContext(seed=0)
    system = get_system("dcase_ae").fit([c for c in clips if c.split == "train"], ctx=ctx)
    scores = system.score([c for c in clips if c.split == "test"], ctx)
"""
import os

# Before anything below loads torch (and its OpenMP runtime, which reads this once): idle
# OpenMP threads sleep instead of spin-waiting. With the default active wait, two torch
# processes sharing 2 cores ran 12x slower; PASSIVE made it ~1x. A value the user set wins.
# (Effective when stethoscope is imported before torch, as the `stethoscope` command does.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .data import Clip, load_audio, make_toy_dataset, scan  # noqa: E402
from .engine import RunContext  # noqa: E402
from .systems import get_system, list_systems, load_system  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Clip", "RunContext", "get_system", "list_systems", "load_audio", "load_system", "make_toy_dataset", "scan"]
