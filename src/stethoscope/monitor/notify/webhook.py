"""Webhooks: each message is a JSON POST, signed so that a receiver can tell it came from this
service and is fresh.

Headers: ``X-Stethoscope-Delivery`` (the message id: the same on every retry, for
de-duplication), ``X-Stethoscope-Timestamp`` (Unix seconds of this try) and
``X-Stethoscope-Signature: sha256=<hex>``, the HMAC-SHA256 with the shared secret of
``<timestamp>.<body>``. A receiver recomputes it, compares in constant time and refuses
timestamps older than a few minutes (a replayed request). Any 2xx answer is delivery; anything
else (or no answer within ``timeout_s``) is retried with backoff. Redirects are not followed.
The URL's path and query may hold a token (Slack, Teams): only its scheme, host and port are
ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from .config import WebhookConfig
from .outbox import Message

USER_AGENT = "stethoscope-notify/1"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Stethoscope-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookChannel:
    """One receiver URL (see the module docstring)."""

    ordered: bool = False  # one failing message never holds back the rest
    batch: int = 20

    def __init__(
        self, name: str, cfg: WebhookConfig, secret: str, warn: Callable[[str], None]
    ) -> None:
        self.name, self.cfg, self.warn = name, cfg, warn
        self._secret = secret
        self.events: tuple[str, ...] = tuple(cfg.events)
        self.retry_max_s: float = cfg.retry_max_s
        self.timeout_s: float = cfg.timeout_s
        self.lease_s: float = self.batch * cfg.timeout_s + 30
        parts = urlsplit(cfg.url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._context = ssl.create_default_context(cafile=cfg.ca) if self._https else None

    def describe(self) -> str:
        port = f":{self._port}" if self._port else ""
        return f"{self.name} ({'https' if self._https else 'http'}://{self._host}{port})"

    def topic(self, kind: str, machine: str) -> str:
        del kind, machine
        return ""

    def start(self) -> None:
        """Nothing to open: each batch opens its own connection."""

    def ready(self) -> bool:
        return True

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self.cfg.timeout_s, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self.cfg.timeout_s)

    def post(self, conn: http.client.HTTPConnection, message: Message) -> str | None:
        """POST one message; None when the receiver answered 2xx, else why not."""
        body = message.payload.encode()
        stamp = str(int(time.time()))
        conn.request(
            "POST",
            self._path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Stethoscope-Delivery": message.delivery_id,
                "X-Stethoscope-Timestamp": stamp,
                "X-Stethoscope-Signature": signature(self._secret, stamp, body),
            },
        )
        answer = conn.getresponse()
        answer.read(64 * 1024)
        return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"

    def deliver(self, messages: list[Message]) -> dict[int, str | None]:
        """POST the messages in order on one keep-alive connection; the first failure ends the
        batch (the receiver is down or refuses) and the rest wait for the same backoff."""
        out: dict[int, str | None] = {}
        conn = self._connection()
        try:
            for message in messages:
                try:
                    error = self.post(conn, message)
                except (OSError, http.client.HTTPException) as err:
                    error = f"{type(err).__name__}: {err}"[:300]
                if error is not None:
                    return {**out, **{m.id: error for m in messages if m.id not in out}}
                out[message.id] = None
        finally:
            conn.close()
        return out

    def close(self) -> None:
        """Nothing held open between batches."""
