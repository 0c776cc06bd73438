"""The notifier: the channels of a notify file, the outbox rows each event gets, and one
background dispatcher thread per channel that delivers them.

`Notifier.enqueue` runs inside the transaction that commits a score (`Monitor.record`), so it
only inserts rows; the threads deliver, never the scoring path, which a slow or dead receiver
therefore never blocks. `Notifier.wake` (after the commit) starts a delivery at once; the
threads also look every `POLL_S` seconds (rows whose backoff ended, rows of another process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import Connection

from ..store import EventStore, StoreError
from . import outbox
from .config import Notify
from .outbox import Message

if TYPE_CHECKING:
    from ..service import ScoreEvent

POLL_S = 0.5
PRUNE_S = 60.0
log = logging.getLogger("stethoscope.notify")


class Channel(Protocol):
    """What a dispatcher needs of a channel (`mqtt`, `webhook`, `mail`)."""

    name: str
    events: tuple[str, ...]
    batch: int
    ordered: bool
    lease_s: float
    retry_max_s: float
    timeout_s: float

    def describe(self) -> str: ...
    def topic(self, kind: str, machine: str) -> str: ...
    def start(self) -> None: ...
    def ready(self) -> bool: ...
    def deliver(self, messages: list[Message]) -> dict[int, str | None]: ...
    def close(self) -> None: ...


def score_payload(event: ScoreEvent) -> dict[str, Any]:
    """A score message: the event as the API answers it, without its warnings."""
    return {
        "kind": "score",
        "machine": event.machine,
        "event_id": event.id,
        "time": event.time,
        "score": event.score,
        "threshold": event.threshold,
        "decision": event.decision,
        "anomaly": bool(event.decision),
        "system": event.system,
        "model_version": event.model_version,
        "source": event.source,
    }


def alarm_payload(event: ScoreEvent) -> dict[str, Any]:
    """An alarm message: raised or cleared, by which score."""
    assert event.alarm is not None
    return {
        **score_payload(event),
        "kind": "alarm",
        "alarm_id": event.alarm.id,
        "state": event.alarm.state,
        "active": event.alarm.state == "raised",
    }


def make_channels(notify: Notify, warn: Callable[[str], None]) -> list[Channel]:
    """The channels of a checked notify file (paho is imported only when MQTT is configured)."""
    section, found = notify.section, list[Channel]()
    if section.mqtt is not None:
        from .mqtt import MqttChannel

        found.append(
            MqttChannel(section.mqtt, notify.secrets.get("notify.mqtt.password_env"), warn)
        )
    if section.webhooks:
        from .webhook import WebhookChannel

        found += [
            WebhookChannel(
                notify.webhook_name(i),
                hook,
                notify.secrets[f"notify.webhooks[{i}].secret_env"],
                warn,
            )
            for i, hook in enumerate(section.webhooks)
        ]
    if section.email is not None:
        from .mail import EmailChannel

        found.append(
            EmailChannel(section.email, notify.secrets.get("notify.email.password_env"), warn)
        )
    return found


class Dispatcher(threading.Thread):
    """Delivers one channel's due outbox rows until stopped (see the module docstring)."""

    def __init__(
        self, channel: Channel, store: EventStore, notify: Notify, warn: Callable[[str], None]
    ) -> None:
        super().__init__(name=f"notify-{channel.name}", daemon=True)
        self.channel, self.store, self.warn = channel, store, warn
        self.keep_delivered_s = notify.section.outbox.keep_delivered_s
        self.max_pending_scores = notify.section.outbox.max_pending_scores
        self.stop, self.woken = threading.Event(), threading.Event()
        self.delivered = self.failures = self.dropped = 0
        self.last_error = ""
        self.failing = False

    def run(self) -> None:
        pruned = 0.0
        while not self.stop.is_set():
            try:
                if time.monotonic() - pruned >= PRUNE_S:
                    self._prune()
                    pruned = time.monotonic()
                busy = self.step()
            except StoreError as err:  # the store is down: try again later; scoring sees it too
                self.warn(f"{self.channel.describe()}: the outbox cannot be read ({err})")
                busy = False
            if not busy:
                self.woken.wait(POLL_S)
                self.woken.clear()

    def step(self) -> bool:
        """Deliver one batch of due rows; whether there was one."""
        if not self.channel.ready():
            return False
        batch = outbox.claim(
            self.store,
            self.channel.name,
            self.channel.batch,
            self.channel.lease_s,
            self.channel.ordered,
        )
        if not batch:
            return False
        try:
            results = self.channel.deliver(batch)
        except Exception as err:
            results = {m.id: f"{type(err).__name__}: {err}"[:300] for m in batch}
        attempts = {m.id: m.attempts for m in batch}
        ok = [i for i, error in results.items() if error is None]
        failed = {i: (attempts[i], error) for i, error in results.items() if error is not None}
        outbox.settle(self.store, ok, failed, self.channel.retry_max_s)
        self.delivered += len(ok)
        self.failures += len(failed)
        self._report(failed)
        return not failed

    def _report(self, failed: dict[int, tuple[int, str]]) -> None:
        """Warn when the channel starts failing and when it works again (not once per message)."""
        if failed:
            attempts, error = next(iter(failed.values()))
            self.last_error = error
            if not self.failing:
                self.warn(
                    f"{self.channel.describe()}: delivery failed ({error}); {len(failed)} "
                    f"message(s) retried in "
                    f"{outbox.backoff(attempts, self.channel.retry_max_s):g} s, backing off"
                )
            self.failing = True
        elif self.failing:
            self.warn(f"{self.channel.describe()}: delivering again")
            self.failing = False

    def _prune(self) -> None:
        dropped = outbox.prune(
            self.store, self.channel.name, self.keep_delivered_s, self.max_pending_scores
        )
        if dropped:
            self.dropped += dropped
            self.warn(
                f"{self.channel.describe()}: dropped the {dropped} oldest undelivered score "
                f"message(s) "
                f"(over max_pending_scores {self.max_pending_scores}; alarm messages are kept)"
            )


class Notifier:
    """The channels of one notify file and their dispatchers (see the module docstring)."""

    def __init__(
        self,
        notify: Notify,
        store: EventStore,
        warn: Callable[[str], None] = log.warning,
        channels: list[Channel] | None = None,
    ) -> None:
        self.notify, self.store = notify, store
        self.channels = channels if channels is not None else make_channels(notify, warn)
        self.dispatchers = [Dispatcher(c, store, notify, warn) for c in self.channels]

    def start(self) -> Notifier:
        for channel, dispatcher in zip(self.channels, self.dispatchers, strict=True):
            channel.start()
            dispatcher.start()
        return self

    def enqueue(self, conn: Connection, event: ScoreEvent) -> None:
        """Insert the event's messages for every channel that wants them, in ``conn``'s
        transaction: a score message for each score, an alarm message when the score raised or
        cleared its machine's alarm."""
        wanted: list[tuple[str, dict[str, Any]]] = [("score", score_payload(event))]
        if event.alarm is not None and event.alarm.state in ("raised", "cleared"):
            # the one place that decides whether an alarm notifies: a muted machine's check
            # (the operator's workflow) goes here
            wanted.append(("alarm", alarm_payload(event)))
        for channel in self.channels:
            for kind, payload in wanted:
                if kind in channel.events:
                    outbox.add(
                        conn,
                        channel.name,
                        kind,
                        channel.topic(kind, event.machine),
                        payload,
                        event.time,
                    )

    def wake(self) -> None:
        """Deliver now (called after a commit that may have added rows)."""
        for dispatcher in self.dispatchers:
            dispatcher.woken.set()

    def backlog(self) -> dict[str, dict[str, Any]]:
        """{channel: pending count, oldest pending age, whether it is failing} (no error text)."""
        found = outbox.backlog(self.store, [c.name for c in self.channels])
        for dispatcher in self.dispatchers:
            found[dispatcher.channel.name]["failing"] = dispatcher.failing
        return found

    def close(self) -> None:
        """Stop the dispatchers (a delivery in flight finishes) and close the channels; what is
        undelivered stays in the outbox for the next start."""
        for dispatcher in self.dispatchers:
            dispatcher.stop.set()
            dispatcher.woken.set()
        for (
            dispatcher
        ) in self.dispatchers:  # at most one try's time each: a row cut short is leased, and
            if dispatcher.is_alive():  # sent again after its lease (at-least-once)
                dispatcher.join(timeout=dispatcher.channel.timeout_s + 1)
        for channel in self.channels:
            channel.close()


class NotifyCollector:
    """Prometheus: ``stethoscope_notify_pending{channel}`` and
    ``stethoscope_notify_oldest_pending_seconds{channel}`` (the outbox at scrape time), and this
    process's ``stethoscope_notify_delivered_total``, ``..._failures_total`` and
    ``..._dropped_total`` per channel."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        pending = GaugeMetricFamily(
            "stethoscope_notify_pending", "outbox messages not yet delivered", labels=["channel"]
        )
        oldest = GaugeMetricFamily(
            "stethoscope_notify_oldest_pending_seconds",
            "age of the oldest undelivered outbox message (0 when none)",
            labels=["channel"],
        )
        for channel, state in self.notifier.backlog().items():
            pending.add_metric([channel], float(state["pending"]))
            oldest.add_metric([channel], float(state["oldest_s"] or 0.0))
        yield pending
        yield oldest
        for what, text in (
            ("delivered", "messages delivered"),
            ("failures", "failed delivery tries"),
            ("dropped", "undelivered score messages dropped past max_pending_scores"),
        ):
            family = CounterMetricFamily(f"stethoscope_notify_{what}", text, labels=["channel"])
            for dispatcher in self.notifier.dispatchers:
                family.add_metric([dispatcher.channel.name], float(getattr(dispatcher, what)))
            yield family
