"""``stethoscope scan DATA``: what a data folder holds, as `train` and `score` will see it.

Prints the layout and why it was chosen; machine types, sections, domains, splits (roles:
train, test, DCASE 2025's supplemental) and labels with their clip counts and how many have
withheld attributes (``noAttribute``); formats, sample rates, channels (and the one read)
and durations; and the
audio policy's findings (`data.policy`), each file decoded once at its own rate. By default
every finding is reported and nothing stops the scan (``--on-bad-audio warn``); with
``--on-bad-audio error`` the first bad file ends it with exit 2, as `train` would.
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from ..data.audio import decode_checked, read_file
from ..data.clip import SUPPLEMENTAL, Clip, channel_name
from ..data.layouts import detect, scan
from ..data.policy import current_policy, screen
from ..errors import AudioSkipped
from ..features.extract import FeatureRequest
from ..workflows.data import resolve_channel
from .flags import add_audio_flag, add_channel, add_quiet


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "scan",
        help="what a data folder holds: layout and why, types, splits, "
        "audio facts, quality findings",
    )
    p.add_argument("data", help="data folder (any supported layout) or a .csv manifest")
    p.add_argument(
        "--layout",
        default="auto",
        help="auto (default), dcase2020, dcase2021, dcase2022, mimii, folder, manifest",
    )
    p.add_argument("--machine", help="only this machine type")
    add_channel(p)
    p.add_argument(
        "--headers-only",
        action="store_true",
        help="check file headers only (fast: no sample-level checks, nothing decoded)",
    )
    add_audio_flag(p)
    add_quiet(p)
    p.set_defaults(func=cmd_scan, on_bad_audio="warn")


def _spread(values: list[float], unit: str) -> str:
    return (
        (
            f"min {min(values):.4g} {unit}, median {statistics.median(values):.4g} {unit}, "
            f"max {max(values):.4g} {unit}"
        )
        if values
        else "-"
    )


def _counts(counter: Counter) -> str:
    return ", ".join(
        f"{key} ({n})" for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))
    )


def cmd_scan(args: argparse.Namespace) -> int:
    detection = detect(args.data) if args.layout == "auto" else None
    layout = detection.layout if detection else args.layout
    why = detection.reason if detection else "given with --layout"
    channel = resolve_channel(args.channel)
    clips = scan(args.data, layout=args.layout, machine=args.machine, channel=channel)
    print(f"{args.data}: layout {layout}: {why}")
    if detection and detection.fits:
        others = [f"{name} {n}" for name, n in detection.fits.items() if name != layout and n]
        if others:
            print(f"  files other layouts fit: {', '.join(others)} of {detection.n_files}")
    _print_clips(clips)
    _print_audio(clips, channel, args.headers_only)
    return 0


def _print_clips(clips: list[Clip]) -> None:
    """The clips per machine, section, domain, split and label; their roles and attributes."""
    print(f"{len(clips)} clips, {len({c.machine for c in clips})} machine type(s)")
    print(
        f"  {'machine':<16}{'section':<12}{'domain':<8}{'split':<13}{'label':<11}"
        f"{'clips':>6}{'hidden attrs':>14}"
    )
    label = {0: "normal", 1: "anomaly", None: "unlabelled"}
    keys = [(c.machine, c.section_tag, c.domain or "-", c.split, label[c.label]) for c in clips]
    groups, hidden = (
        Counter(keys),
        Counter(k for k, c in zip(keys, clips, strict=True) if c.hidden_attributes),
    )
    for key, n in sorted(groups.items()):
        machine, section, domain, split, lab = key
        print(
            f"  {machine:<16}{section:<12}{domain:<8}{split:<13}{lab:<11}{n:>6}"
            f"{hidden[key] or '-':>14}"
        )
    roles = Counter(c.split for c in clips)
    print(
        f"roles: {_counts(roles)}"
        + (
            f"; {SUPPLEMENTAL}: extra clean machine / noise clips, "
            "for systems that "
            "ask for them (none is trained on them by default)"
            if roles[SUPPLEMENTAL]
            else ""
        )
    )
    n_hidden, n_attrs = (
        sum(c.hidden_attributes for c in clips),
        sum(bool(c.attributes) for c in clips),
    )
    print(
        f"attributes: {n_attrs} clip(s) with attributes, {n_hidden} withheld (noAttribute), "
        f"{len(clips) - n_attrs - n_hidden} with none"
    )


def _print_audio(clips: list[Clip], channel: int | None, headers_only: bool) -> None:
    """The formats, rates, channels and durations of the files, and the quality findings of
    their header (and, unless ``headers_only``, sample) checks."""
    min_seconds = FeatureRequest().min_seconds
    kept, headers = screen(clips, min_seconds)
    facts = list(headers.values())
    print(f"audio: {len(facts)} readable headers of {len({Path(c.path) for c in clips})} files")
    print(f"  formats: {_counts(Counter(f'{h.format}/{h.subtype}' for h in facts))}")
    print(f"  sample rates: {_counts(Counter(f'{h.sample_rate} Hz' for h in facts))}")
    print(
        f"  channels: {_counts(Counter(h.channels for h in facts))}; reading channel "
        f"{channel_name(channel)}" + (" (the mean of all channels)" if channel is None else "")
    )
    print(f"  durations: {_spread([h.seconds for h in facts], 's')}")
    policy = current_policy()
    if not headers_only:
        for path in dict.fromkeys(
            Path(c.path) for c in kept
        ):  # each file decoded once, at its own rate
            try:
                decode_checked(read_file(path, policy), path, None, channel, min_seconds, policy)
            except AudioSkipped:
                continue
    flagged = {f.path for f in policy.findings}
    kinds = Counter(re.split(r"[:(]", f.reason)[0].strip() for f in policy.findings)
    checked = "header" if headers_only else "header and sample"
    print(f"quality ({checked} checks): {len(flagged)} file(s) flagged")
    for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<40}{n:>6}")
