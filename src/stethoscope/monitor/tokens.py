"""Named, scoped tokens: who may do what over HTTP, and under which name their actions are stored.

Three scopes, each including the one before:

* ``read``: events, alarms, machines, metrics, audio, pictures, mutes, labels, the audit log;
* ``operate``: also acknowledge alarms, label events, mute machines and cancel mutes;
* ``write``: also post clips (``POST /score``), open PCM streams and set alarm rules.

``serve --tokens FILE`` reads them from YAML (`load_tokens`); each token comes from an
environment variable (``token_env``) or is given as the SHA-256 hex digest of the token
(``sha256``), so the file never holds a token in plain text. The single ``--token`` of old is
one token named ``admin`` with the ``write`` scope (`Tokens.single`).

Only SHA-256 digests are kept in memory; a presented token is hashed and compared with every
digest in constant time (`hmac.compare_digest`, no early exit), so the time taken says nothing
about which token, or how much of one, matched.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

READ, OPERATE, WRITE = "read", "operate", "write"
SCOPES = (READ, OPERATE, WRITE)  # each includes the ones before it
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
HEX64 = re.compile(r"[0-9a-f]{64}")
MIN_TOKEN = 16
MAX_TOKENS = 1000
ADMIN = "admin"
ANONYMOUS = "anonymous"  # the author of actions on a service started with --no-token
KEYS = {"name", "scope", "token_env", "sha256"}


def digest(token: str) -> bytes:
    """The SHA-256 digest of a token (what is kept and compared, never the token)."""
    return hashlib.sha256(token.encode()).digest()


def allows(scope: str, need: str) -> bool:
    """Whether a token of ``scope`` may do what needs ``need``."""
    return SCOPES.index(scope) >= SCOPES.index(need)


@dataclass(frozen=True)
class Identity:
    """Who a request comes from: the token's name (the author of its actions) and its scope."""

    name: str
    scope: str

    def allows(self, need: str) -> bool:
        return allows(self.scope, need)


@dataclass(frozen=True)
class TokenEntry:
    name: str
    scope: str
    sha256: bytes


class Tokens:
    """The tokens a service accepts (see the module docstring)."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        if not entries:
            raise ConfigError("a tokens file must name at least one token")
        self.entries = entries

    @classmethod
    def single(cls, token: str, name: str = ADMIN) -> Tokens:
        """The one token of ``--token``/``$STETHOSCOPE_TOKEN``: named ``admin``, every scope."""
        return cls([TokenEntry(name, WRITE, digest(token))])

    def who(self, presented: str | None) -> Identity | None:
        """The identity of the token ``presented``, or None. Every digest is compared (constant
        time each, no early exit)."""
        if presented is None:
            return None
        wanted, found = digest(presented), None
        for entry in self.entries:
            if hmac.compare_digest(wanted, entry.sha256) and found is None:
                found = entry
        return None if found is None else Identity(found.name, found.scope)

    def entry(self, name: str) -> TokenEntry | None:
        """The token named ``name`` (a login cookie names one), or None."""
        return next((e for e in self.entries if e.name == name), None)

    def describe(self) -> str:
        """``name (scope)`` of every token, for the start-up line (never a token or digest)."""
        return ", ".join(f"{e.name} ({e.scope})" for e in self.entries)


def load_tokens(path: str | Path, environ: dict[str, str] | None = None) -> Tokens:
    """The tokens of a YAML file, ``tokens:`` a list of ``{name, scope, token_env | sha256}``;
    a `ConfigError` naming the file, the entry and the key for anything wrong."""
    environ = dict(os.environ) if environ is None else environ
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"--tokens {path}: cannot read it ({err.strerror or err})") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"--tokens {path}: not valid YAML ({str(err).splitlines()[0]})") from err
    items = loaded.get("tokens") if isinstance(loaded, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_TOKENS:
        raise ConfigError(
            f"--tokens {path}: needs 'tokens:', a list of 1 to {MAX_TOKENS} entries "
            f"{{name, scope, token_env or sha256}}"
        )
    entries: list[TokenEntry] = []
    for i, item in enumerate(items):
        entry = _entry(item, f"--tokens {path}: tokens[{i}]", environ)
        if any(e.name == entry.name for e in entries):
            raise ConfigError(
                f"--tokens {path}: tokens[{i}]: the name {entry.name!r} is used twice"
            )
        if any(hmac.compare_digest(e.sha256, entry.sha256) for e in entries):
            raise ConfigError(
                f"--tokens {path}: tokens[{i}] ({entry.name}): the same token as another entry"
            )
        entries.append(entry)
    return Tokens(entries)


def _entry(item: Any, where: str, environ: dict[str, str]) -> TokenEntry:
    """One entry of a tokens file, checked."""
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: must be a mapping {{name, scope, token_env or sha256}}")
    unknown = sorted(set(map(str, item)) - KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})"
        )
    name, scope = item.get("name"), item.get("scope")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"{where}.name: letters, digits, '_ . @ -', at most 64 characters; got {name!r:.80}"
        )
    if scope not in SCOPES:
        raise ConfigError(f"{where}.scope ({name}): one of {', '.join(SCOPES)}; got {scope!r:.40}")
    if ("token_env" in item) == ("sha256" in item):
        raise ConfigError(
            f"{where} ({name}): give exactly one of token_env (an environment variable "
            f"holding the token) and sha256 (the token's SHA-256 hex digest)"
        )
    if "sha256" in item:
        value = str(item["sha256"]).strip().lower()
        if not HEX64.fullmatch(value):
            raise ConfigError(
                f"{where}.sha256 ({name}): must be 64 hex digits (sha256sum of the token), "
                f'e.g. printf %s "$TOKEN" | sha256sum'
            )
        return TokenEntry(name, scope, bytes.fromhex(value))
    variable = item["token_env"]
    token = environ.get(variable) if isinstance(variable, str) else None
    if not token:
        raise ConfigError(
            f"{where}.token_env ({name}): the environment variable {variable!r:.80} is not set"
        )
    if len(token) < MIN_TOKEN:
        raise ConfigError(
            f"{where}.token_env ({name}): ${variable} holds {len(token)} characters; use at "
            f"least {MIN_TOKEN}"
        )
    return TokenEntry(name, scope, digest(token))
