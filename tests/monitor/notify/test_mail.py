"""E-mail against a real aiosmtpd on loopback: alarms only, over STARTTLS when the server offers
it (a self-signed certificate, verified through ``ca``), Message-ID from the delivery id;
``require_tls`` refuses a server without STARTTLS."""

from __future__ import annotations

from pathlib import Path

from stethoscope.monitor.notify import outbox

from .conftest import Mailbox, attach, raise_and_clear, wait_for


def mail_file(port: int, extra: str = "") -> str:
    return (
        f"notify:\n  email: {{host: 127.0.0.1, port: {port}, sender: 'stethoscope@plant.example', "
        f"to: ['maintenance@plant.example', 'oncall@plant.example'], retry_max_s: 1{extra}}}\n"
    )


def test_alarms_are_mailed_over_starttls(
    monitor, tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    cert, _ = self_signed
    box = Mailbox(tls=self_signed, require_starttls=True)
    try:
        notifier = attach(
            monitor, tmp_path, mail_file(box.port, f", require_tls: true, ca: '{cert}'")
        )
        raise_and_clear(monitor)
        wait_for(lambda: len(box.messages) == 2, what="two alarm mails")
        (raised, tls1, rcpt1), (cleared, tls2, _) = box.messages
        assert tls1 and tls2  # both went over STARTTLS
        assert rcpt1 == ["maintenance@plant.example", "oncall@plant.example"]
        assert raised["Subject"] == "[stethoscope] ALARM raised: fan"
        assert cleared["Subject"] == "[stethoscope] alarm cleared: fan"
        rows = [r for r in outbox.messages(monitor.store)]
        assert [r["kind"] for r in rows] == ["alarm", "alarm"]  # e-mail never gets scores
        assert [raised["Message-ID"], cleared["Message-ID"]] == [
            f"<{r['delivery_id']}@stethoscope>" for r in rows
        ]
        assert (
            "score:" in raised.get_payload(decode=True).decode()
            and "alarm id:" in raised.get_payload(decode=True).decode()
        )
        wait_for(lambda: notifier.backlog()["email"]["pending"] == 0, what="an empty outbox")
    finally:
        box.close()


def test_require_tls_refuses_a_server_without_starttls(monitor, tmp_path: Path) -> None:
    box = Mailbox()
    try:
        notifier = attach(monitor, tmp_path, mail_file(box.port, ", require_tls: true"))
        raise_and_clear(monitor)
        wait_for(
            lambda: any(r["attempts"] for r in outbox.messages(monitor.store)), what="a failed try"
        )
        assert box.messages == [] and notifier.backlog()["email"]["pending"] == 2
        assert "STARTTLS" in outbox.messages(monitor.store)[0]["last_error"]
    finally:
        box.close()


def test_plain_smtp_when_tls_is_not_offered_nor_required(monitor, tmp_path: Path) -> None:
    box = Mailbox()
    try:
        attach(monitor, tmp_path, mail_file(box.port))
        raise_and_clear(monitor)
        wait_for(lambda: len(box.messages) == 2, what="two alarm mails")
        assert [tls for _, tls, _ in box.messages] == [False, False]
    finally:
        box.close()
