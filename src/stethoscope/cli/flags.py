"""Flags more than one verb takes, each defined once here: the runtime settings (how a run
executes, never saved as hyperparameters), the audio policy's, the data and system flags."""

from __future__ import annotations

import argparse

from ..data.clip import channel_name, parse_channel
from ..data.policy import ON_BAD_AUDIO
from ..data.quality import DEFAULT_MAX_SECONDS
from ..engine.context import PRECISIONS
from ..errors import ConfigError
from ..workflows.spec import DEFAULT_SYSTEM

Container = argparse._ActionsContainer

__all__ = [
    "DEFAULT_SYSTEM",
    "add_audio_flag",
    "add_channel",
    "add_data",
    "add_max_seconds",
    "add_quiet",
    "add_runtime",
    "add_system",
    "channel_arg",
]


def add_quiet(p: Container) -> None:
    """``--quiet``, which every verb takes."""
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars or lines and no info lines on stderr "
        "(warnings and errors still show)",
    )


def channel_arg(text: str) -> str:
    """argparse type of ``--channel``: ``0``, ``1``, ... or ``mean``, checked, kept as text."""
    try:
        return str(channel_name(parse_channel(text)))
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_channel(p: Container, model: bool = False) -> None:
    """``--channel 0|1|...|mean``; for verbs that use a model, its default is the model's own."""
    default = "the channel the model was trained on (0 for older models)" if model else "0"
    p.add_argument(
        "--channel",
        type=channel_arg,
        default=None,
        metavar="N|mean",
        help=f"channel of multichannel files: a number or mean (default: {default}); DCASE 2026: "
        "0 near, 1 far microphone; MIMII: 0-7",
    )


def add_audio_flag(group: Container) -> None:
    """``--on-bad-audio error|skip|warn`` (and ``--max-seconds``) for a verb that reads audio
    files."""
    group.add_argument(
        "--on-bad-audio",
        choices=ON_BAD_AUDIO,
        default=None,
        metavar="{error,skip,warn}",
        help="what an unreadable or suspicious audio file does: error (stop, naming it), skip "
        "(leave it out, list it in skipped.csv) or warn (keep suspicious files, leave out "
        "unreadable ones, say so); default: error on unreadable, warn on suspicious",
    )
    add_max_seconds(group)


def add_max_seconds(group: Container) -> None:
    """``--max-seconds S``: the longest audio decoded, checked on the header before decoding."""
    group.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        metavar="S",
        help=f"refuse audio longer than S seconds, from its header, before decoding it (default "
        f"{DEFAULT_MAX_SECONDS:g}; bounds the memory one file can take)",
    )


def add_weights_dir(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--weights-dir DIR`` (repeatable): where pretrained encoder weights are found."""
    p.add_argument(
        "--weights-dir",
        action="append",
        metavar="DIR",
        help="folder of pretrained encoder weights, searched first (repeatable; "
        "then $STETHOSCOPE_WEIGHTS_DIR, then ~/.cache/stethoscope/weights); a "
        "saved model finds its weights there by sha256, whatever the file's name",
    )


def add_runtime(
    p: argparse.ArgumentParser,
    training: bool = False,
    *,
    seed: bool = True,
    cache: bool = True,
    audio: bool = True,
    threads: int | None = None,
) -> argparse._ArgumentGroup:
    """The ``runtime`` group: ``--device``, ``--threads`` (default ``threads``), ``--weights-dir``
    and ``--quiet``;
    ``--seed``, ``--cache``/``--no-cache`` and ``--on-bad-audio``/``--max-seconds`` unless turned
    off; with ``training`` also ``--precision``, ``--resume`` and ``--checkpoint-every``."""
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda or cuda:N")
    if seed:
        g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument(
        "--threads",
        type=int,
        default=threads,
        help=f"torch threads (default {threads})"
        if threads is not None
        else "torch threads (default 1 under OpenMP's PASSIVE wait, stethoscope's default; "
        "docs/architecture.md)",
    )
    if cache:
        g.add_argument(
            "--cache",
            metavar="DIR",
            help="feature cache folder (default $STETHOSCOPE_CACHE or ~/.cache/stethoscope)",
        )
        g.add_argument("--no-cache", action="store_true", help="read and write no feature cache")
    add_weights_dir(g)
    add_quiet(g)
    if audio:
        add_audio_flag(g)
    if training:
        g.add_argument(
            "--precision",
            default="fp32",
            choices=PRECISIONS,
            help="fp32 (default) or bf16 autocast",
        )
        g.add_argument(
            "--resume",
            action="store_true",
            help="continue an interrupted run from OUT/.checkpoints "
            "(skips machine types already trained)",
        )
        g.add_argument(
            "--checkpoint-every",
            type=int,
            default=1,
            metavar="N",
            help="save a training checkpoint every N epochs (default 1; 0 = none)",
        )
    return g


def add_data(p: argparse.ArgumentParser, model: bool = False) -> None:
    """``--layout``, ``--machine`` and ``--channel`` of a verb that reads a data folder."""
    p.add_argument(
        "--layout",
        default="auto",
        help="auto (default), dcase2020, dcase2021, dcase2022, mimii, folder, manifest",
    )
    p.add_argument("--machine", help="only this machine type")
    add_channel(p, model=model)


def add_system(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--set``: a system's hyperparameters."""
    p.add_argument("--config", help="YAML file (or packaged config name) of system hyperparameters")
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        metavar="KEY=VALUE",
        help="override hyperparameters, e.g. --set epochs=10 batch_size=64 (repeatable)",
    )
