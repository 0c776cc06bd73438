"""``list``: the registered systems, encoders and detectors."""

from __future__ import annotations

import argparse

from ..systems.base import list_systems
from .flags import add_quiet


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="systems, encoders and detectors")
    add_quiet(p)
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from ..detectors import list_detectors
    from ..encoders import list_encoders

    del args
    print("systems:")
    for name, cls in list_systems().items():
        joint = " [joint: one fit over all machine types]" if cls.joint is True else ""
        print(f"  {name:<24} {cls.description}{joint}")
    print("encoders:")
    for enc in list_encoders():
        if enc["name"] == "random":
            state = "random weights (a no-pretraining control)"
        else:
            present = "present" if enc.get("weights_present") else "missing"
            state = f"weights {present} ({enc.get('weights_file')})"
        print(f"  {enc['name']:<24} dim {enc['dim']:<4} {state}")
    print("detectors:")
    for det in list_detectors():
        params = ", ".join(f"{k}={v}" for k, v in det["params"].items())
        print(f"  {det['name']:<24} {det['description']} [{params}]")
    return 0
