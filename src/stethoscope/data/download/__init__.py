"""Downloading the DCASE Task 2 and MIMII data sets from their official records, verified
against published checksums, unpacked into the layouts `data.layouts` scans."""

from .registry import Dataset, Registry, Remote, Split, load_registry, select
from .run import Options, Plan, download, dry_run, make_plan

__all__ = [
    "Dataset",
    "Options",
    "Plan",
    "Registry",
    "Remote",
    "Split",
    "download",
    "dry_run",
    "load_registry",
    "make_plan",
    "select",
]
