"""Data: the `Clip` record, audio loading, layout scanners and the synthetic toy factory."""

from .audio import load_audio
from .clip import Clip
from .layouts import LAYOUTS, detect_layout, scan
from .toy_factory import make_toy_dataset, toy_clip

__all__ = ["LAYOUTS", "Clip", "detect_layout", "load_audio", "make_toy_dataset", "scan", "toy_clip"]
