"""``watch``: score every audio file a recorder drops into a folder, once and only once across
restarts (`monitor.watch`), or with ``--mic`` a sound card's input, one score per hop
(`monitor.mic`). Scores go to the event store ``serve`` uses, so one ``--db`` may be shared with a
running ``serve`` (its /events, /alarms and dashboard show them). See docs/monitor.md.

Ctrl-C and SIGTERM stop it cleanly: the file being scored is finished (or left unmarked, to be
scored at the next start), the sound card is closed, and the exit code is 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine import RunContext
from ..errors import ConfigError, StethoscopeError
from .common import info, weights_dirs
from .flags import add_audio_flag, add_channel, add_runtime
from .monitoring import (
    DEFAULT_DB,
    add_notify,
    load_notify_file,
    open_monitor,
    parse_alarm,
    start_notifier,
)

if TYPE_CHECKING:
    from ..monitor.service import Monitor, ScoreEvent

Say = Callable[[str], None]


def _require_store() -> None:
    if importlib.util.find_spec("sqlalchemy") is None:
        raise StethoscopeError(
            "`stethoscope watch` needs the event store of the serve extra "
            "(sqlalchemy missing): "
            "pip install 'stethoscope[serve]'"
        )


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM while the block runs (handlers only in the main thread)."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_modes(args: argparse.Namespace) -> None:
    if args.mic == (args.dir is not None):
        raise ConfigError(
            "give a folder to watch (stethoscope watch DIR --models M) or --mic, not both"
        )
    if args.mic:
        if args.machine is None:
            raise ConfigError(
                "--mic needs --machine: the machine whose model scores the sound card's input"
            )
        if (
            args.recursive
            or args.poll is not None
            or args.on_bad_audio is not None
            or args.channel is not None
        ):
            raise ConfigError(
                "--recursive, --poll, --on-bad-audio and --channel are for "
                "watching a folder, not --mic"
            )
        if args.max_lag is not None:
            from ..monitor.mic import check_max_lag

            check_max_lag(args.max_lag)
    elif args.input_device is not None or args.rate is not None or args.max_lag is not None:
        raise ConfigError("--input-device, --rate and --max-lag are for --mic")
    elif not Path(args.dir).expanduser().is_dir():
        raise ConfigError(f"watch {args.dir}: no such folder")
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    import torch

    try:
        torch.device(args.device)
    except RuntimeError:
        raise ConfigError(
            f"--device {args.device!r} is not a torch device (cpu, cuda or cuda:N)"
            + ("; the sound card is --input-device" if args.mic else "")
        ) from None
    if args.keep_audio_mb is not None and args.keep_audio_mb < 0:
        raise ConfigError(f"--keep-audio-mb must be >= 0, got {args.keep_audio_mb}")


def _mic_settings(args: argparse.Namespace) -> tuple[int | str | None, int, str]:
    """(device, rate, source label) from the flags; the device's own rate when --rate is not
    given."""
    from ..monitor.mic import MicError, sounddevice_module

    sd = sounddevice_module()
    given = args.input_device
    device: int | str | None = int(given) if given and given.isdigit() else given
    try:
        found = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as err:
        raise MicError(
            f"--input-device {given or '(default)'}: {err}; list devices with `python3 "
            "-m sounddevice`"
        ) from None
    rate = args.rate or int(found["default_samplerate"])
    return device, rate, f"mic:{found['name']}"[:200]


def cmd_watch(args: argparse.Namespace) -> int:
    _require_store()
    _check_modes(args)
    alarm = parse_alarm(args.alarm)
    mic = (
        _mic_settings(args) if args.mic else None
    )  # a missing sounddevice fails before models load
    notify = load_notify_file(args.notify)
    say = info(args)
    ctx = RunContext(
        device=args.device, threads=args.threads, progress=False, weights_dirs=weights_dirs(args)
    )
    ctx.check_device()
    ctx.apply_threads()
    monitor = open_monitor(args, ctx, alarm, say)
    try:
        start_notifier(monitor, notify, say)
        with _stop_on_signals() as stop:
            if mic is None:
                _watch_folder(args, monitor, stop, say)
            else:
                _listen(args, monitor, stop, say, *mic)
    finally:
        monitor.close()
    return 0


def _watch_folder(
    args: argparse.Namespace, monitor: Monitor, stop: threading.Event, say: Say
) -> None:
    from ..data.policy import print_warning
    from ..monitor.watch import FolderWatcher

    watcher = FolderWatcher(
        monitor,
        args.dir,
        machine=args.machine,
        recursive=args.recursive,
        settle=args.settle,
        poll=args.poll,
        on_bad_audio=args.on_bad_audio,
        channel=args.channel,
        max_file_mb=args.max_file_mb,
        say=say,
        warn=print_warning,
    )
    how = f"rescanning every {args.poll:g} s" if args.poll else "watchdog"
    whose = args.machine or "the machine named by each sub-folder"
    say(
        f"watching {watcher.root} ({how}; settle {args.settle:g} s) for {whose}; event store "
        f"{monitor.store.where}"
    )
    stats = watcher.run(stop)
    say(
        f"stopped: {stats.scored} file(s) scored, {stats.skipped} skipped, {stats.already} done "
        "by another watcher"
    )


def _listen(
    args: argparse.Namespace,
    monitor: Monitor,
    stop: threading.Event,
    say: Say,
    device: int | str | None,
    rate: int,
    source: str,
) -> None:
    from ..data.policy import print_warning
    from ..monitor.mic import QUEUE_SECONDS, MicError, MicListener

    def show(event: ScoreEvent, end: float) -> None:
        say(
            f"{end:8.2f} s  {event.score:12.6g}  {'ANOMALY' if event.decision else 'normal'}  "
            f"event {event.id}"
        )

    lag = QUEUE_SECONDS if args.max_lag is None else args.max_lag
    listener = MicListener(
        monitor,
        args.machine,
        rate,
        args.window,
        args.hop,
        device,
        source,
        queue_seconds=lag,
        warn=print_warning,
        on_score=show,
    )
    say(
        f"listening to {source} at {rate} Hz for {args.machine}: a {args.window:g} s window every "
        f"{args.hop:g} s"
    )
    stats = listener.run(stop)
    say(
        f"stopped: {stats.scores} score(s); {stats.overflows} input overflow(s), "
        f"{stats.dropped_blocks} block(s) dropped"
    )
    if not stop.is_set():
        raise MicError(f"the input stream of {source} stopped (device unplugged?)")


def _add_folder_flags(p: argparse.ArgumentParser) -> None:
    """The flags of watching a folder: recursion, settling, polling, file size, channel, audio."""
    folder = p.add_argument_group("watching a folder")
    folder.add_argument(
        "--recursive",
        action="store_true",
        help="also files deeper than DIR/<sub-folder>/ (the machine is still the first sub-folder)",
    )
    folder.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds a file's size and mtime must stay unchanged before it is scored (default 2)",
    )
    folder.add_argument(
        "--poll",
        type=float,
        help="rescan every POLL seconds instead of "
        "watching with watchdog (network shares, "
        "where change events do not arrive)",
    )
    folder.add_argument(
        "--max-file-mb",
        type=float,
        default=256.0,
        metavar="MB",
        help="skip files larger than MB unread (default 256; --max-seconds "
        "bounds the decoded audio)",
    )
    add_channel(folder, model=True)
    add_audio_flag(folder)


def _add_mic_flags(p: argparse.ArgumentParser) -> None:
    """The flags of ``--mic``: the sound card, its rate, the stream window and the lag bound."""
    mic = p.add_argument_group("--mic: a sound card (needs the mic extra)")
    mic.add_argument(
        "--mic", action="store_true", help="score a sound card's input instead of a folder"
    )
    mic.add_argument(
        "--input-device",
        metavar="DEVICE",
        help="the sound card: its index or part of its name (python3 -m sounddevice "
        "lists them; "
        "default: the system's default input); --device is the torch device",
    )
    mic.add_argument("--rate", type=int, help="sample rate in Hz (default: the device's own)")
    mic.add_argument("--window", type=float, default=10.0, help="seconds per score (default 10)")
    mic.add_argument("--hop", type=float, default=1.0, help="seconds between scores (default 1)")
    mic.add_argument(
        "--max-lag",
        type=float,
        metavar="SECONDS",
        help="how far scoring may fall behind the sound card before input is dropped, counted "
        "and said (default 30)",
    )


def _add_store_flags(p: argparse.ArgumentParser) -> None:
    """The alarm rule and what the event store keeps and how durably."""
    p.add_argument(
        "--alarm",
        metavar="K/N",
        help="alarm rule of every served machine: K of the "
        "last N decisions anomalous (default: a new "
        "machine gets 3/5, a known one keeps its)",
    )
    p.add_argument(
        "--keep-audio-mb",
        type=float,
        metavar="MB",
        help="a byte budget for all "
        "audio kept in the "
        "event store (as serve's): past it the oldest clips' audio is dropped first "
        "(default: none)",
    )
    p.add_argument(
        "--sync",
        default="full",
        choices=("full", "normal"),
        help="SQLite commit durability: full (default; survives power loss) or normal "
        "(survives a killed process, not a power cut)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="score every new audio file in a folder exactly once (or "
        "--mic: a sound card) "
        "into serve's event store",
        description="Score every new audio file a recorder drops into DIR, "
        "exactly once even across "
        "restarts, or with --mic a sound card's input every --hop "
        "seconds. Scores and "
        "alarms go to the event store of `serve` (docs/monitor.md).",
    )
    p.add_argument(
        "dir",
        nargs="?",
        metavar="DIR",
        help="folder to watch: DIR/<machine>/clip.wav, or any file with --machine",
    )
    p.add_argument(
        "--models",
        required=True,
        help="folder written by `train --out` (one sub-folder per machine)",
    )
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        help="SQLite file or SQLAlchemy URL of the event "
        "store "
        f"(default ./{DEFAULT_DB}; may be serve's)",
    )
    p.add_argument(
        "--machine",
        help="score every file (or the microphone) with this machine's "
        "model; default: the file's sub-folder name",
    )
    _add_store_flags(p)
    add_notify(p)
    _add_folder_flags(p)
    _add_mic_flags(p)
    add_runtime(p, seed=False, cache=False, audio=False, threads=1)
    p.set_defaults(func=cmd_watch)
