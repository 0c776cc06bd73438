"""What ``serve`` and ``watch`` share: the event store's default file, the ``--alarm K/N`` rule,
the ``--notify FILE`` notifications (checked before any model loads) and opening the scoring
core from their common flags."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError, StethoscopeError

if TYPE_CHECKING:
    from ..engine import RunContext
    from ..monitor.notify import Notify
    from ..monitor.service import Monitor

DEFAULT_DB = "stethoscope-events.db"


def parse_alarm(value: str | None) -> tuple[int, int] | None:
    """``"3/5"`` -> (3, 5): alarm when 3 of the last 5 decisions are anomalous."""
    if value is None:
        return None
    k, _, n = value.partition("/")
    if not (k.strip().isdigit() and n.strip().isdigit()):
        raise ConfigError(
            f"--alarm must be K/N, e.g. 3/5 (3 of the last 5 decisions anomalous), got {value!r}"
        )
    from ..monitor.store import check_alarm_rule

    check_alarm_rule(int(k), int(n))
    return int(k), int(n)


def load_notify_file(path: str | None) -> Notify | None:
    """The checked ``--notify`` file (None without one): read before any model loads, so that a
    bad key fails at once."""
    if path is None:
        return None
    from ..monitor.notify import load_notify

    notify = load_notify(path)
    if notify.section.mqtt is not None and importlib.util.find_spec("paho") is None:
        raise StethoscopeError(
            f"--notify {path}: notify.mqtt needs paho-mqtt: pip install 'stethoscope[serve]'"
        )
    return notify


def open_monitor(
    args: argparse.Namespace,
    ctx: RunContext,
    alarm: tuple[int, int] | None,
    say: Callable[[str], None],
    keep_audio: int | None = None,
) -> Monitor:
    """The scoring core on ``--models`` and ``--db`` with the shared flags (``--sync``,
    ``--max-seconds``, ``--keep-audio-mb``); ``keep_audio`` clips per machine keep their audio
    (None: the core's default)."""
    from ..monitor.db import database_url
    from ..monitor.service import DEFAULT_KEEP_AUDIO, Monitor

    return Monitor.open(
        args.models,
        database_url(args.db),
        ctx,
        args.sync,
        alarm,
        say,
        DEFAULT_KEEP_AUDIO if keep_audio is None else keep_audio,
        args.max_seconds,
        None if args.keep_audio_mb is None else int(args.keep_audio_mb * 2**20),
    )


def start_notifier(monitor: Monitor, notify: Notify | None, say: Callable[[str], None]) -> None:
    """Give ``monitor`` the notifier of ``notify`` and start its dispatchers (warnings to
    stderr)."""
    if notify is None:
        return
    from ..data.policy import print_warning
    from ..monitor.notify import Notifier

    monitor.notifier = Notifier(notify, monitor.store, print_warning).start()
    say(
        f"notifying {', '.join(c.describe() for c in monitor.notifier.channels)} "
        "through the outbox of the event store"
    )


def add_notify(p: argparse.ArgumentParser) -> None:
    """``--notify FILE`` (serve and watch)."""
    p.add_argument(
        "--notify",
        metavar="FILE",
        help="YAML file with a notify: section: send scores and alarms to "
        "MQTT, webhooks and e-mail through a persistent outbox (docs/monitor.md, Notifications); "
        "secrets come from the environment variables it names",
    )
