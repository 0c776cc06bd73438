"""E-mail over SMTP, alarms only: one message per alarm raised or cleared, to every ``to``
address, its ``Message-ID`` made from the delivery id (mail clients and archives drop
duplicates by it). STARTTLS is used whenever the server offers it (``starttls: true``, the
default), verifying its certificate (the system's CAs, or ``ca``); ``require_tls: true`` refuses
to send in clear when it is not offered. A password (``password_env``) is only ever sent after
STARTTLS."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime

from .config import EmailConfig
from .outbox import Message


def alarm_mail(cfg: EmailConfig, message: Message) -> EmailMessage:
    """The e-mail of one alarm message."""
    body = message.body
    what = "ALARM raised" if body["state"] == "raised" else "alarm cleared"
    when = datetime.fromtimestamp(body["time"], timezone.utc)
    mail = EmailMessage()
    mail["Subject"] = f"{cfg.subject_prefix} {what}: {body['machine']}".strip()
    mail["From"] = cfg.sender
    mail["To"] = ", ".join(cfg.to)
    mail["Date"] = format_datetime(when)
    mail["Message-ID"] = f"<{message.delivery_id}@stethoscope>"
    mail.set_content(
        f"{what} on machine {body['machine']} at {when.isoformat(timespec='seconds')}.\n\n"
        f"alarm id:   {body['alarm_id']}\nevent id:   {body['event_id']}\n"
        f"score:      {body['score']:.6g} (threshold {body['threshold']:.6g})\n"
        f"model:      {body['system']} {body['model_version']}\nsource:     {body['source']}\n"
        f"delivery:   {message.delivery_id}\n"
    )
    return mail


class EmailChannel:
    """One SMTP server and its recipients (see the module docstring)."""

    name: str = "email"
    ordered: bool = False  # one failing message never holds back the rest
    batch: int = 20
    events: tuple[str, ...] = ("alarm",)

    def __init__(self, cfg: EmailConfig, password: str | None, warn: Callable[[str], None]) -> None:
        self.cfg, self.warn = cfg, warn
        self._password = password
        self.retry_max_s: float = cfg.retry_max_s
        self.timeout_s: float = cfg.timeout_s
        self.lease_s: float = self.batch * cfg.timeout_s + 30
        self._context = ssl.create_default_context(cafile=cfg.ca)

    def describe(self) -> str:
        return f"email {self.cfg.host}:{self.cfg.port}"

    def topic(self, kind: str, machine: str) -> str:
        del kind, machine
        return ""

    def start(self) -> None:
        """Nothing to open: each batch opens its own SMTP session."""

    def ready(self) -> bool:
        return True

    def _session(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.cfg.host, self.cfg.port, timeout=self.cfg.timeout_s)
        try:
            smtp.ehlo()
            if self.cfg.starttls and smtp.has_extn("starttls"):
                smtp.starttls(context=self._context)
                smtp.ehlo()
            elif self.cfg.require_tls:
                raise smtplib.SMTPNotSupportedError(
                    "the server does not offer STARTTLS (require_tls is set)"
                )
            if self.cfg.username is not None:
                smtp.login(self.cfg.username, self._password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def deliver(self, messages: list[Message]) -> dict[int, str | None]:
        """Send the messages in one SMTP session; a failure ends the batch (the rest are
        retried)."""
        out: dict[int, str | None] = {}
        try:
            smtp = self._session()
        except (OSError, smtplib.SMTPException, ssl.SSLError) as err:
            return {m.id: f"{type(err).__name__}: {err}"[:300] for m in messages}
        try:
            for message in messages:
                try:
                    smtp.send_message(alarm_mail(self.cfg, message))
                except (OSError, smtplib.SMTPException) as err:
                    return {
                        **out,
                        **{
                            m.id: f"{type(err).__name__}: {err}"[:300]
                            for m in messages
                            if m.id not in out
                        },
                    }
                out[message.id] = None
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
        return out

    def close(self) -> None:
        """Nothing held open between batches."""
