"""The ``--notify FILE`` of ``serve`` and ``watch``: a YAML file with one ``notify:`` section
(MQTT, webhooks, e-mail), checked strictly: an unknown key or a bad value is a `ConfigError`
naming the file and the key. Secrets are never in the file: it names environment variables
(``secret_env``, ``password_env``) whose values are read here and kept out of every repr."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ...errors import ConfigError

MAX_FILE_BYTES = 1 << 20
Kind = Literal["alarm", "score"]
TOPIC_PART = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _env_name(value: str | None) -> str | None:
    if value is not None and not ENV_NAME.fullmatch(value):
        raise ValueError("must be the name of an environment variable (letters, digits, '_')")
    return value


class Delivery(_Strict):
    """What every channel shares: its events, the retry cap and the time one try may take."""

    timeout_s: float = Field(10.0, gt=0, le=300)
    retry_max_s: float = Field(60.0, ge=1, le=86_400)


class MqttConfig(Delivery):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("stethoscope", max_length=200)
    events: list[Kind] = Field(default_factory=lambda: list[Kind](["alarm", "score"]), min_length=1)
    client_id: str | None = Field(None, max_length=128)
    keepalive_s: int = Field(30, ge=5, le=3600)
    username: str | None = Field(None, max_length=200)
    password_env: str | None = None
    tls: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    _env = field_validator("password_env")(_env_name)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not TOPIC_PART.fullmatch(value):
            raise ValueError(
                "must be topic levels of letters, digits, '_', '.', '-' joined by '/' "
                "(no '+', '#', "
                "leading or trailing '/')"
            )
        return value

    @model_validator(mode="after")
    def _pairs(self) -> MqttConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError(
                "cert and key go together (the client's certificate and its private key)"
            )
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env needs username")
        return self


class WebhookConfig(Delivery):
    url: str = Field(min_length=1, max_length=2000)
    secret_env: str
    name: str | None = None
    events: list[Kind] = Field(default_factory=lambda: list[Kind](["alarm"]), min_length=1)
    ca: str | None = None

    _env = field_validator("secret_env")(_env_name)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME.fullmatch(value):
            raise ValueError("must be letters, digits, '_', '.' or '-' (at most 64)")
        return value


class EmailConfig(Delivery):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(25, ge=1, le=65535)
    sender: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    to: list[str] = Field(min_length=1, max_length=100)
    starttls: bool = True
    require_tls: bool = False
    ca: str | None = None
    username: str | None = Field(None, max_length=200)
    password_env: str | None = None
    subject_prefix: str = Field("[stethoscope]", max_length=100)

    _env = field_validator("password_env")(_env_name)

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+", address):
                raise ValueError(f"{address[:80]!r} is not an e-mail address")
        return value

    @model_validator(mode="after")
    def _tls(self) -> EmailConfig:
        if self.require_tls and not self.starttls:
            raise ValueError("require_tls needs starttls: true")
        if self.username is not None and (self.password_env is None or not self.require_tls):
            raise ValueError(
                "username needs password_env and require_tls: true (a password never goes in clear)"
            )
        return self


class OutboxConfig(_Strict):
    keep_delivered_s: float = Field(300.0, ge=0, le=30 * 86_400)
    max_pending_scores: int = Field(10_000, ge=1, le=10_000_000)


class NotifySection(_Strict):
    mqtt: MqttConfig | None = None
    webhooks: list[WebhookConfig] = Field(default_factory=list, max_length=20)
    email: EmailConfig | None = None
    outbox: OutboxConfig = OutboxConfig.model_validate({})


class NotifyFile(_Strict):
    notify: NotifySection


@dataclass(frozen=True)
class Notify:
    """A checked notify file: the section, the channel names and the secrets read from the
    environment (``secrets`` is kept out of repr; nothing logs it)."""

    path: str
    section: NotifySection
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def webhook_name(self, index: int) -> str:
        """The channel name of webhook ``index``: ``webhook:<name>`` (default: its position)."""
        return f"webhook:{self.section.webhooks[index].name or index + 1}"

    def channels(self) -> list[str]:
        """Every channel's name (the outbox's ``channel`` column)."""
        names = ["mqtt"] if self.section.mqtt else []
        names += [self.webhook_name(i) for i in range(len(self.section.webhooks))]
        return names + (["email"] if self.section.email else [])


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "missing (required)"
    got = repr(error.get("input"))[:80]
    return f"{error['msg'].removeprefix('Value error, ')} (got {got})"


def _read(path: str | Path) -> Any:
    file = Path(path).expanduser()
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(
                f"--notify {path}: larger than {MAX_FILE_BYTES} bytes; is it the right file?"
            )
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"--notify {path}: cannot read it ({err.strerror or err})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"--notify {path}: not valid YAML ({err})") from None


def load_notify(path: str | Path) -> Notify:
    """Read and check the notify file ``path`` and the secrets it names; `ConfigError` names
    the file and the key of the first problems found."""
    raw = _read(path)
    try:
        checked = NotifyFile.model_validate(raw if raw is not None else {})
    except ValidationError as err:
        said = "; ".join(f"{_where(e['loc']) or 'file'}: {_problem(e)}" for e in err.errors()[:5])
        raise ConfigError(f"--notify {path}: {said}") from None
    section = checked.notify
    if not (section.mqtt or section.webhooks or section.email):
        raise ConfigError(f"--notify {path}: notify: names no channel (mqtt, webhooks or email)")
    notify = Notify(str(path), section, _secrets(path, section))
    names = notify.channels()
    if len(set(names)) != len(names):
        raise ConfigError(
            f"--notify {path}: notify.webhooks: two webhooks share a name ({', '.join(names)})"
        )
    for key, value in _files(section):
        if not Path(value).expanduser().is_file():
            raise ConfigError(f"--notify {path}: {key}: no such file {value!r}")
    return notify


def _secrets(path: str | Path, section: NotifySection) -> dict[str, str]:
    """{key: secret} of every ``*_env`` key, read from the environment (empty values refused)."""
    wanted = {}
    if section.mqtt and section.mqtt.password_env:
        wanted["notify.mqtt.password_env"] = section.mqtt.password_env
    for i, hook in enumerate(section.webhooks):
        wanted[f"notify.webhooks[{i}].secret_env"] = hook.secret_env
    if section.email and section.email.password_env:
        wanted["notify.email.password_env"] = section.email.password_env
    found = {}
    for key, env in wanted.items():
        value = os.environ.get(env, "")
        if not value:
            raise ConfigError(
                f"--notify {path}: {key}: the environment variable {env} is not set (or empty)"
            )
        found[key] = value
    return found


def _files(section: NotifySection) -> list[tuple[str, str]]:
    found = []
    if section.mqtt:
        found += [
            (f"notify.mqtt.{k}", v)
            for k in ("ca", "cert", "key")
            if (v := getattr(section.mqtt, k))
        ]
    found += [(f"notify.webhooks[{i}].ca", h.ca) for i, h in enumerate(section.webhooks) if h.ca]
    if section.email and section.email.ca:
        found.append(("notify.email.ca", section.email.ca))
    return found
