"""Notifications (``--notify FILE``): scores and alarms to MQTT, webhooks and e-mail through a
persistent outbox in the event store (at-least-once; see docs/monitor.md, "Notifications")."""

from .config import Notify, load_notify
from .dispatcher import Notifier, NotifyCollector

__all__ = ["Notifier", "Notify", "NotifyCollector", "load_notify"]
