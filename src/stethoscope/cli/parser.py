"""The argument parser: one sub-command per verb of `verbs.VERBS`, each declaring its own flags."""

from __future__ import annotations

import argparse

from .verbs import VERBS


def _version() -> str:
    import platform

    import torch

    from .. import __version__

    return (
        f"stethoscope {__version__} (torch {torch.__version__}, Python {platform.python_version()})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``stethoscope`` parser with every verb of `VERBS`."""
    from . import __doc__ as doc

    parser = argparse.ArgumentParser(prog="stethoscope", description=doc)
    parser.add_argument(
        "--version",
        action="version",
        version=_version(),
        help="print the stethoscope, torch and Python versions and exit",
    )
    sub = parser.add_subparsers(
        dest="verb", required=True, metavar="VERB", help="what to do (VERB --help for more)"
    )
    for verb, module in VERBS.items():
        module.add_parser(sub)
        if verb not in sub.choices:
            raise RuntimeError(f"verb module {module.__name__} added no sub-command {verb!r}")
    return parser
