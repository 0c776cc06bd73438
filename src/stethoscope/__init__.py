"""Stethoscope: unsupervised anomalous sound detection for machine condition monitoring.

    from stethoscope import RunContext, scan, get_system
    clips = scan("dev_data/fan")
    ctx = RunContext(seed=0)
    system = get_system("dcase_ae").fit([c for c in clips if c.split == "train"], ctx=ctx)
    scores = system.score([c for c in clips if c.split == "test"], ctx)
"""
from .data import Clip, load_audio, make_toy_dataset, scan
from .engine import RunContext
from .systems import get_system, list_systems, load_system

__version__ = "0.1.0"
__all__ = ["Clip", "RunContext", "get_system", "list_systems", "load_audio", "load_system", "make_toy_dataset", "scan"]
