"""Who may do what over HTTP: the bearer tokens and their scopes (`tokens`), the dashboard's
login cookie (reads and operator actions, set by ``POST /login``), the ``Origin`` rule for every
write and websocket, the trusted ``Host`` names, and a log filter that keeps tokens out of
uvicorn's log lines.

The cookie holds no token: it is ``<expiry>.<token name>.<HMAC-SHA256>`` of both and the
token's digest, keyed with a secret drawn at start, so it dies with its expiry, when the token
changes or the service restarts, and a stolen cookie never reveals the token. It carries the
token's scope up to ``operate`` (reads and operator actions, never clips or streams). It is
``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no other site's page sends it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import socket
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import Receive, Scope, Send

from ..errors import ConfigError
from .tokens import ADMIN, ANONYMOUS, OPERATE, SCOPES, WRITE, Identity, Tokens

COOKIE = "stethoscope_session"
SESSION_S = 12 * 3600
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
NO_TOKEN = "missing or wrong token: send 'Authorization: Bearer <token>'"
TOKEN_IN_URL = re.compile(r"((?:[?&]|%3[fF]|%26)(?:access_)?token(?:=|%3[dD]))[^&\s\"']*")


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, value = (header or "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def normal_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, without a trailing slash."""
    return origin.strip().rstrip("/").lower()


def check_origin(origin: str) -> str:
    """An ``--allow-origin`` value, normalised, or a `ConfigError`: ``http(s)://host[:port]``."""
    parts = urlsplit(normal_origin(origin))
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path
        or parts.query
        or "*" in origin
    ):
        raise ConfigError(
            f"--allow-origin must be an origin like https://console.plant.example:8443 (scheme, "
            f"host, optional port; no path, no wildcard), got {origin[:80]!r}"
        )
    return normal_origin(origin)


class Guard:
    """The tokens (None: ``--no-token``, everything open; a string: the one ``--token``, named
    ``admin`` with every scope) and the origins allowed besides the service's own
    (``--allow-origin``). Login cookies are signed with a key drawn when the service starts."""

    def __init__(self, tokens: Tokens | str | None, allow_origins: Sequence[str] = ()) -> None:
        self.tokens = Tokens.single(tokens) if isinstance(tokens, str) else tokens
        self.allow_origins = {check_origin(o) for o in allow_origins}
        self._key = secrets.token_bytes(32)

    # -- the tokens and the cookie ----------------------------------------------------------
    def identify(self, presented: str | None) -> Identity | None:
        """Who holds the token ``presented`` (constant-time comparison), or None; with
        ``--no-token`` everyone is ``anonymous`` with every scope."""
        if self.tokens is None:
            return Identity(ANONYMOUS, WRITE)
        return self.tokens.who(presented)

    def token_ok(self, presented: str | None, need: str = WRITE) -> bool:
        """Whether ``presented`` is a token whose scope allows ``need`` (default: writing)."""
        found = self.identify(presented)
        return found is not None and found.allows(need)

    def _sign(self, name: str, expiry: int) -> str:
        assert self.tokens is not None
        entry = self.tokens.entry(name)
        secret = entry.sha256.hex() if entry else ""
        return hmac.new(
            self._key, f"dashboard-session:{name}:{expiry}:{secret}".encode(), hashlib.sha256
        ).hexdigest()

    def session(self, name: str = ADMIN, now: float | None = None) -> str:
        """A new login cookie's value for the token named ``name``, valid `SESSION_S` seconds."""
        expiry = int((time.time() if now is None else now) + SESSION_S)
        return f"{expiry}.{name}.{self._sign(name, expiry)}"

    def cookie_identity(self, value: str | None) -> Identity | None:
        """Who a login cookie was given to, if this service signed it and it has not expired;
        its scope is at most ``operate`` (a cookie never posts clips or opens streams)."""
        if self.tokens is None:
            return Identity(ANONYMOUS, OPERATE)
        expiry, _, rest = (value or "").partition(".")
        name, _, mac = rest.rpartition(".")
        if not expiry.isdigit() or len(expiry) > 12 or int(expiry) < time.time():
            return None
        entry = self.tokens.entry(name)
        signed = self._sign(name, int(expiry)) if entry is not None else ""
        if entry is None or not hmac.compare_digest(mac.encode(), signed.encode()):
            return None
        return Identity(entry.name, min(entry.scope, OPERATE, key=SCOPES.index))

    def cookie_ok(self, value: str | None) -> bool:
        """Whether ``value`` is a valid login cookie (see `cookie_identity`)."""
        return self.cookie_identity(value) is not None

    def need_token(self, request: Request) -> Identity:
        """A dependency for writes: a bearer token with the ``write`` scope (401 without a
        valid token, 403 with one of a smaller scope)."""
        found = self.identify(bearer(request.headers.get("authorization")))
        return _allowed(found, WRITE, "")

    def need_reader(self, request: Request) -> None:
        """A dependency for protected reads: the bearer token or a valid login cookie, or 401."""
        if self.identify(bearer(request.headers.get("authorization"))) or self.cookie_ok(
            request.cookies.get(COOKIE)
        ):
            return
        raise HTTPException(
            401, NO_TOKEN + " (or log in on the dashboard)", headers={"WWW-Authenticate": "Bearer"}
        )

    def need_operator(self, request: Request) -> Identity:
        """A dependency for operator actions: a bearer token or a login cookie whose scope
        allows ``operate`` (401 without either, 403 with too small a scope); who it is."""
        header = bearer(request.headers.get("authorization"))
        if header is not None:
            found = self.identify(header)
        else:
            found = self.cookie_identity(request.cookies.get(COOKIE))
        return _allowed(found, OPERATE, " (or log in on the dashboard)")

    # -- origins ----------------------------------------------------------------------------
    def origin_ok(self, origin: str | None, host: str | None) -> bool:
        """No ``Origin`` (not a browser: curl, recorders) passes; a browser's must be this
        service's own (its host and port equal the ``Host`` header) or an allowed one."""
        if origin is None:
            return True
        wanted = normal_origin(origin)
        if wanted in self.allow_origins:
            return True
        parts = urlsplit(wanted)
        return (
            parts.scheme in ("http", "https")
            and bool(host)
            and parts.netloc == (host or "").lower()
        )

    def same_origin(self, request: Request) -> None:
        """A dependency for every write: a foreign ``Origin`` gets 403 before anything is read."""
        if not self.origin_ok(request.headers.get("origin"), request.headers.get("host")):
            raise HTTPException(
                403,
                "this origin may not write here (a page from another site); "
                "serve --allow-origin adds one",
            )


def _allowed(found: Identity | None, need: str, hint: str) -> Identity:
    """``found`` when its scope allows ``need``; else 401 (nobody) or 403 (too small a scope)."""
    if found is None:
        raise HTTPException(401, NO_TOKEN + hint, headers={"WWW-Authenticate": "Bearer"})
    if not found.allows(need):
        raise HTTPException(
            403, f"the token {found.name!r} has the scope {found.scope!r}; this needs {need!r}"
        )
    return found


def trusted_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` names the service answers to: the bound address (and the loopback names on
    a loopback address; on a wildcard bind, the loopback names and this computer's name), plus
    ``--allowed-host`` (``*`` turns the check off)."""
    names: list[str] = list(extra)
    for name in extra:
        if name != "*" and (
            "*" in name[1:]
            or (name.startswith("*") and not name.startswith("*."))
            or not name
            or "/" in name
        ):
            raise ConfigError(
                f"--allowed-host must be a host name or address ('*.example.com' for a domain, "
                f"'*' for any), got {name[:80]!r}"
            )
    if host in WILDCARD_BINDS:
        names += [*LOOPBACK_NAMES, socket.gethostname()]
    else:
        names.append(host.strip("[]"))
        if host in LOOPBACK_NAMES or host.startswith("127."):
            names += LOOPBACK_NAMES
    return list(dict.fromkeys(name.lower().strip("[]") if name != "*" else name for name in names))


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's `TrustedHostMiddleware` (a request naming another ``Host`` gets 400: DNS
    rebinding), answering ``{"detail": ...}`` like every other error."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        name = Headers(scope=scope).get("host", "")
        host = (
            name.rsplit("]", 1)[0].lstrip("[") if name.startswith("[") else name.rsplit(":", 1)[0]
        ).lower()
        if any(
            host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in self.allowed_hosts
        ):
            await self.app(scope, receive, send)
            return
        await JSONResponse(
            {
                "detail": f"this service does not answer to the Host {name[:80]!r}; serve "
                f"--allowed-host adds a name"
            },
            status_code=400,
        )(scope, receive, send)


class RedactTokens(logging.Filter):
    """Replaces the value of any ``token=`` in a URL of a log line by ``[redacted]`` (uvicorn's
    access and websocket lines log the path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                TOKEN_IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = TOKEN_IN_URL.sub(r"\1[redacted]", record.msg)
        return True


def redact_uvicorn_logs() -> None:
    """Add `RedactTokens` to uvicorn's loggers (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
