"""MQTT (paho-mqtt 2.x): scores on ``<prefix>/<machine>/score``, alarm raise and clear on
``<prefix>/<machine>/alarm`` (retained: a subscriber that connects later gets the machine's
current alarm state), and the service's health on ``<prefix>/status``: ``online`` (retained)
on every connect, ``offline`` (retained) as the last will when the connection dies and on a
clean stop. Messages are published with QoS 1 and marked delivered only after the broker's
PUBACK; paho reconnects by itself (1 s doubling up to ``retry_max_s``)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .config import MqttConfig
from .outbox import Message

QOS = 1


class MqttChannel:
    """One broker connection of one process (see the module docstring)."""

    name: str = "mqtt"
    ordered: bool = True  # retained alarm states: strictly in order
    batch: int = 100

    def __init__(self, cfg: MqttConfig, password: str | None, warn: Callable[[str], None]) -> None:
        self.cfg, self.warn = cfg, warn
        self.events: tuple[str, ...] = tuple(cfg.events)
        self.retry_max_s: float = cfg.retry_max_s
        self.timeout_s: float = cfg.timeout_s
        self.lease_s: float = 2 * cfg.timeout_s + 30
        self.status_topic = f"{cfg.topic_prefix}/status"
        self._connected = threading.Event()
        client_id = cfg.client_id or f"stethoscope-{socket.gethostname()[:40]}-{os.getpid()}"
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311
        )
        if cfg.username is not None:
            self.client.username_pw_set(cfg.username, password)
        if cfg.tls or cfg.ca:
            self.client.tls_set(
                ca_certs=cfg.ca,
                certfile=cfg.cert,
                keyfile=cfg.key,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        self.client.will_set(self.status_topic, "offline", qos=QOS, retain=True)
        self.client.reconnect_delay_set(1, max(1, int(cfg.retry_max_s)))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self._said_down = False

    def describe(self) -> str:
        return f"mqtt {self.cfg.host}:{self.cfg.port}"

    def topic(self, kind: str, machine: str) -> str:
        return f"{self.cfg.topic_prefix}/{machine}/{kind}"

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        del userdata, flags, properties
        if getattr(reason, "is_failure", False):
            self._down(f"the broker refused the connection ({reason})")
            return
        client.publish(self.status_topic, "online", qos=QOS, retain=True)
        self._connected.set()
        if self._said_down:
            self.warn(f"{self.describe()}: connected again")
            self._said_down = False

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: object,
        reason: object,
        properties: object,
    ) -> None:
        del client, userdata, flags, properties
        self._connected.clear()
        self._down(f"disconnected ({reason})")

    def _down(self, why: str) -> None:
        if not self._said_down:
            self.warn(f"{self.describe()}: {why}; messages wait in the outbox, reconnecting")
            self._said_down = True

    def start(self) -> None:
        """Connect in the background (paho's network thread; a broker that is down is retried)."""
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def ready(self) -> bool:
        return self._connected.is_set()

    def deliver(self, messages: list[Message]) -> dict[int, str | None]:
        """Publish every message (QoS 1; alarms retained) and wait for each PUBACK, at most
        ``timeout_s`` in all: {row id: None when acknowledged, else why not}."""
        infos = [
            (m.id, self.client.publish(m.topic, m.payload, qos=QOS, retain=m.kind == "alarm"))
            for m in messages
        ]
        deadline = time.monotonic() + self.cfg.timeout_s
        out: dict[int, str | None] = {}
        for row_id, info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as err:
                out[row_id] = f"not published ({err})"
                continue
            out[row_id] = (
                None if info.is_published() else f"no PUBACK within {self.cfg.timeout_s:g} s"
            )
        return out

    def close(self) -> None:
        """Say ``offline`` (retained) when connected, then disconnect and stop paho's thread."""
        if self._connected.is_set():
            info = self.client.publish(self.status_topic, "offline", qos=QOS, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(self.cfg.timeout_s)
        self.client.disconnect()
        self.client.loop_stop()
