"""The clips a workflow reads: data folders and files named by the user, screened by the audio
policy in force (`data.policy`), split by machine type, and the channel each model reads."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..data.clip import Clip, channel_name, parse_channel
from ..data.policy import audio_paths, screen
from ..features.extract import FeatureRequest
from ..systems.base import System


def screened(clips: Sequence[Clip], min_seconds: float) -> list[Clip]:
    """The clips that pass the header checks of the active policy (see `data.policy.screen`)."""
    return screen(clips, min_seconds)[0]


def scan(
    root: str | Path,
    layout: str = "auto",
    machine: str | None = None,
    channel: int | None = 0,
    min_seconds: float = FeatureRequest().min_seconds,
    headers: bool = True,
) -> list[Clip]:
    """The clips of a data folder that pass the audio policy's file and header checks
    (``headers=False``: the file checks only, see `audio_clips`)."""
    from ..data.layouts import scan as scan_layout

    clips = scan_layout(root, layout=layout, machine=machine, channel=channel)
    return screened(clips, min_seconds) if headers else clips


def audio_clips(
    paths: Sequence[str | Path],
    channel: int | None,
    machine: str,
    min_seconds: float,
    headers: bool = True,
) -> list[Clip]:
    """Files and folders named by the user as clips, after the policy's file and header checks.

    ``headers=False`` (the scoring paths) opens no file: only what ``stat`` tells is checked
    here, and each file's header is checked from the bytes its one read gives, in the decoding
    pass (`data.audio.decode_checked`: undecodable, truncated, over ``--max-seconds``, too
    short, suffix vs content, sample rate). What that pass cannot see is the set's median
    duration, so a duration far from it is flagged only where headers are read first (`scan`,
    training)."""
    clips = [Clip(path=p, machine=machine, channel=channel) for p in audio_paths(paths)]
    return screened(clips, min_seconds) if headers else clips


def training_clips(clips: Sequence[Clip]) -> list[Clip]:
    """The layout's training split; where a folder has none (e.g. only labelled test clips),
    the clips labelled normal, said aloud."""
    train = [c for c in clips if c.split == "train" and c.label in (0, None)]
    if train:
        return train
    normals = [c for c in clips if c.label == 0]
    if normals:
        print(
            f"note: no training split found; training on the {len(normals)} clips labelled normal",
            file=sys.stderr,
        )
    return normals


def by_machine(clips: Sequence[Clip]) -> dict[str, list[Clip]]:
    """The clips grouped by machine type, types in sorted order."""
    out: dict[str, list[Clip]] = {}
    for c in clips:
        out.setdefault(c.machine, []).append(c)
    return dict(sorted(out.items()))


def resolve_channel(given: str | int | None, system: System | None = None) -> int | None:
    """The channel a run reads: ``given`` (``--channel``) when not None, else the model's recorded
    one (``run.channel`` in its config.json), else 0. A given channel that differs from the
    model's is warned about (`warnings.warn`)."""
    recorded = (system.run_ or {}).get("channel", 0) if system is not None else 0
    if given is None:
        return parse_channel(recorded)
    channel = parse_channel(given)
    if system is not None and channel_name(channel) != recorded:
        warnings.warn(
            f"the model was trained on channel {recorded}; reading channel {given} as asked",
            stacklevel=2,
        )
    return channel
