"""The notify file is checked strictly: every problem names the file and the key; secrets come
from the environment and never show in a repr or an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from stethoscope.errors import ConfigError
from stethoscope.monitor.notify import load_notify

ISSUE_SHAPE = """
notify:
  mqtt: {host: 127.0.0.1, port: 1883, topic_prefix: stethoscope}
  webhooks:
    - {url: "http://127.0.0.1:9000/hook", secret_env: HOOK_SECRET}
  email: {host: 127.0.0.1, port: 8025, sender: "stethoscope@plant.example",
          to: ["maintenance@plant.example"]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notify.yaml"
    path.write_text(text)
    return path


def test_the_issue_s_shape_loads_with_its_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret-value")
    notify = load_notify(write(tmp_path, ISSUE_SHAPE))
    assert notify.channels() == ["mqtt", "webhook:1", "email"]
    assert notify.section.mqtt is not None and notify.section.mqtt.events == ["alarm", "score"]
    assert notify.section.webhooks[0].events == ["alarm"]  # alarms by default, scores on request
    assert notify.section.email is not None and notify.section.email.starttls
    assert notify.secrets == {"notify.webhooks[0].secret_env": "s3cret-value"}
    assert "s3cret-value" not in repr(notify)


@pytest.mark.parametrize(
    "text, said",
    [
        ("notify:\n  mqtt: {host: h, hots: x}\n", "notify.mqtt.hots: unknown key"),
        (
            "notify:\n  mqtt: {host: h, port: 70000}\n",
            "notify.mqtt.port: Input should be less than or equal to 65535",
        ),
        ("notify:\n  mqtt: {host: h, port: '1883'}\n", "notify.mqtt.port"),
        ("notify:\n  mqtt: {host: h, topic_prefix: 'a/#'}\n", "notify.mqtt.topic_prefix"),
        ("notify:\n  mqtt: {host: h, events: [alarm, sms]}\n", "notify.mqtt.events[1]"),
        ("notify:\n  mqtt: {host: h, cert: c.pem}\n", "cert and key go together"),
        ("notify:\n  webhooks: [{url: 'ftp://x/y', secret_env: S}]\n", "notify.webhooks[0].url"),
        ("notify:\n  webhooks: [{url: 'http://x/y'}]\n", "notify.webhooks[0].secret_env: missing"),
        ("notify:\n  email: {host: h, sender: a@b, to: [nobody]}\n", "notify.email.to"),
        (
            "notify:\n  email: {host: h, sender: a@b, to: [c@d], username: u, password_env: P}\n",
            "require_tls",
        ),
        (
            (
                "notify:\n  email: {host: h, sender: a@b, to: [c@d], starttls: false, "
                "require_tls: true}\n"
            ),
            "require_tls",
        ),
        ("notify:\n  outbox: {keep_delivered_s: -1}\n", "notify.outbox.keep_delivered_s"),
        ("notify: {}\n", "names no channel"),
        ("notfy:\n  mqtt: {host: h}\n", "notfy: unknown key"),
        ("- a list\n", "Input should be"),
        ("notify: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, said: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_notify(path)
    assert said in str(err.value) and str(path) in str(err.value)


def test_secrets_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET_VAR", raising=False)
    path = write(
        tmp_path, "notify:\n  webhooks: [{url: 'http://x/y', secret_env: NO_SUCH_SECRET_VAR}]\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"notify.webhooks\[0\].secret_env: the environment variable "
        r"NO_SUCH_SECRET_VAR is not set",
    ):
        load_notify(path)
    monkeypatch.setenv("MQ_PASSWORD", "pw-value-1")
    notify = load_notify(
        write(tmp_path, "notify:\n  mqtt: {host: h, username: u, password_env: MQ_PASSWORD}\n")
    )
    assert notify.secrets == {
        "notify.mqtt.password_env": "pw-value-1"
    } and "pw-value-1" not in repr(notify)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_notify(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"notify\.mqtt\.ca: no such file"):
        load_notify(
            write(tmp_path, "notify:\n  mqtt: {host: h, tls: true, ca: /nonexistent/ca.pem}\n")
        )


def test_two_webhooks_need_distinct_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S", "x" * 20)
    text = (
        "notify:\n  webhooks:\n    - {url: 'http://a/', secret_env: S, name: ops}\n"
        "    - {url: 'http://b/', secret_env: S, name: ops}\n"
    )
    with pytest.raises(ConfigError, match="share a name"):
        load_notify(write(tmp_path, text))
