"""Real receivers on loopback for the notifier tests: a Mosquitto broker (started, stopped and
restarted on one port), an MQTT subscriber, a webhook receiver that fails its first N calls and
checks the signature, an aiosmtpd mail server (with STARTTLS on a self-signed certificate)."""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ..conftest import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SECRET = "hook-secret-0123456789"


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


class Broker:
    """``mosquitto`` on a fixed loopback port of its own; `start` returns once it accepts."""

    def __init__(
        self,
        folder: Path,
        password_file: Path | None = None,
        tls: tuple[Path, Path] | None = None,
        persist: bool = False,
    ):
        self.folder, self._port, self.port_given = folder, free_port(), False
        self.password_file, self.tls, self.persist = password_file, tls, persist
        self.proc: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        """The broker's port; once a test has read it, `start` never moves the broker."""
        self.port_given = True
        return self._port

    @property
    def log(self) -> Path:
        return self.folder / f"mosquitto-{self._port}.log"

    def _config(self) -> Path:
        lines = [f"listener {self._port} 127.0.0.1", f"user {getpass.getuser()}"]
        lines += (
            ["persistence true", f"persistence_location {self.folder}/"]
            if self.persist
            else ["persistence false"]
        )
        if self.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
        path = self.folder / f"mosquitto-{self._port}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 15.0, tries: int = 3) -> Broker:
        """Start it; a broker that exits or does not listen in time (another process took its
        port between `free_port` and the bind, or a loaded machine) is tried again, on a new
        port unless a test already holds this one, and skipped only after ``tries`` tries."""
        if not Path(MOSQUITTO).exists():
            pytest.skip(f"mosquitto is not installed ({MOSQUITTO}; apt-get install mosquitto)")
        for _ in range(tries):
            if self._started(timeout):
                return self
            self.stop()
            if not self.port_given:
                self._port = free_port()
        pytest.skip(f"mosquitto did not start in {tries} tries: {self.log.read_text()[-500:]}")

    def _started(self, timeout: float) -> bool:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self._config())], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self._port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """SIGTERM: a persistent broker saves its sessions and queued messages."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Subscriber:
    """A paho client subscribed to ``topic`` (QoS 1) that keeps (topic, JSON or text, retain)."""

    def __init__(
        self, port: int, topic: str = "#", client_id: str | None = None, **tls: Any
    ) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.got: list[tuple[str, Any, bool]] = []
        self._lock = threading.Lock()
        # a fixed client_id keeps a persistent session: the broker queues QoS 1 messages
        # while the subscriber is away
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{time.time_ns()}",
            clean_session=client_id is None,
        )
        if tls:
            self.client.tls_set(**tls)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, m, r, p: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(15), "the test subscriber could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        text = msg.payload.decode()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        with self._lock:
            self.got.append((msg.topic, body, bool(msg.retain)))

    def on(self, suffix: str) -> list[tuple[Any, bool]]:
        with self._lock:
            return [(body, retain) for topic, body, retain in self.got if topic.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


class Receiver:
    """A webhook receiver (http.server in a thread): answers 500 to its first ``fail_first``
    calls, then 200 to requests whose signature and timestamp check out (401 otherwise)."""

    def __init__(self, fail_first: int = 0, secret: str = SECRET) -> None:
        self.fail_first, self.secret, self.calls = fail_first, secret, 0
        self.accepted: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.refused = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.handle(dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=url-secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail_first:
                return 500
            stamp = headers["X-Stethoscope-Timestamp"]
            mac = hmac.new(
                self.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            fresh = abs(time.time() - int(stamp)) < 300
            if not (
                hmac.compare_digest(f"sha256={mac}", headers["X-Stethoscope-Signature"]) and fresh
            ):
                self.refused += 1
                return 401
            self.accepted.append((headers, json.loads(body)))
            return 200

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, body in self.accepted]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1 and localhost, made by the openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed: no certificate for the TLS tests")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Mailbox:
    """aiosmtpd on a free loopback port keeping every message; with ``tls`` it offers STARTTLS."""

    def __init__(
        self, tls: tuple[Path, Path] | None = None, require_starttls: bool = False
    ) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                from email import message_from_bytes

                mailbox.messages.append(
                    (
                        message_from_bytes(envelope.content),
                        session.ssl is not None,
                        list(envelope.rcpt_tos),
                    )
                )
                return "250 OK"

        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
        self.port = free_port()
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=require_starttls,
        )
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def attach(monitor: Any, tmp_path: Path, text: str, said: list[str] | None = None) -> Any:
    """Give ``monitor`` the started notifier of the notify file ``text`` (closed with it); its
    warnings go to ``said``."""
    from stethoscope.monitor.notify import Notifier, load_notify

    path = tmp_path / "notify.yaml"
    path.write_text(text)
    monitor.notifier = Notifier(
        load_notify(path),
        monitor.store,
        warn=(said.append if said is not None else lambda message: None),
    ).start()
    return monitor.notifier


def raise_and_clear(monitor: Any, machine: str = "fan", times: int = 1) -> None:
    """Record decisions that raise and then clear ``machine``'s alarm ``times`` times
    (rule 1 of 1)."""
    monitor.store.set_alarm_rule(machine, 1, 1)
    for _ in range(times):
        monitor.record(machine, 9.0, 1, source="raise")
        monitor.record(machine, 0.1, 0, source="clear")
