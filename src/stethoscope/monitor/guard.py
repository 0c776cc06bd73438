"""Who may do what over HTTP: the bearer token (writes, streams and protected reads), the
dashboard's login cookie (reads only, set by ``POST /login``), the ``Origin`` rule for every
write and websocket, the trusted ``Host`` names, and a log filter that keeps tokens out of
uvicorn's log lines.

The cookie holds no token: it is ``<expiry>.<HMAC-SHA256(token, expiry)>``, so it dies with its
expiry or when the token changes, and a stolen cookie never reveals the token. It is
``HttpOnly`` (no script reads it) and ``SameSite=Strict`` (no other site's page sends it).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import socket
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from ..errors import ConfigError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import Receive, Scope, Send

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
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or "*" in origin:
        raise ConfigError(f"--allow-origin must be an origin like https://console.plant.example:8443 (scheme, "
                          f"host, optional port; no path, no wildcard), got {origin[:80]!r}")
    return normal_origin(origin)


class Guard:
    """The token (None: ``--no-token``, everything open) and the origins allowed besides the
    service's own (``--allow-origin``)."""

    def __init__(self, token: str | None, allow_origins: Sequence[str] = ()) -> None:
        self.token = token
        self.allow_origins = {check_origin(o) for o in allow_origins}

    # -- the token and the cookie -----------------------------------------------------------
    def token_ok(self, presented: str | None) -> bool:
        """Whether ``presented`` is the token (constant time); always with ``--no-token``."""
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(presented.encode(), self.token.encode())

    def _sign(self, expiry: int) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), f"dashboard-session:{expiry}".encode(), hashlib.sha256).hexdigest()

    def session(self, now: float | None = None) -> str:
        """A new login cookie's value, valid `SESSION_S` seconds."""
        expiry = int((time.time() if now is None else now) + SESSION_S)
        return f"{expiry}.{self._sign(expiry)}"

    def cookie_ok(self, value: str | None) -> bool:
        """Whether ``value`` is a login cookie this token signed that has not expired."""
        if self.token is None:
            return True
        expiry, _, mac = (value or "").partition(".")
        if not expiry.isdigit() or len(expiry) > 12 or int(expiry) < time.time():
            return False
        return hmac.compare_digest(mac.encode(), self._sign(int(expiry)).encode())

    def need_token(self, request: Request) -> None:
        """A dependency: the bearer token, or 401."""
        if not self.token_ok(bearer(request.headers.get("authorization"))):
            raise HTTPException(401, NO_TOKEN, headers={"WWW-Authenticate": "Bearer"})

    def need_reader(self, request: Request) -> None:
        """A dependency for protected reads: the bearer token or a valid login cookie, or 401."""
        if self.token_ok(bearer(request.headers.get("authorization"))) or self.cookie_ok(request.cookies.get(COOKIE)):
            return
        raise HTTPException(401, NO_TOKEN + " (or log in on the dashboard)", headers={"WWW-Authenticate": "Bearer"})

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
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc == (host or "").lower()

    def same_origin(self, request: Request) -> None:
        """A dependency for every write: a foreign ``Origin`` gets 403 before anything is read."""
        if not self.origin_ok(request.headers.get("origin"), request.headers.get("host")):
            raise HTTPException(403, "this origin may not write here (a page from another site); "
                                     "serve --allow-origin adds one")


def trusted_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The ``Host`` names the service answers to: the bound address (and the loopback names on
    a loopback address; on a wildcard bind, the loopback names and this computer's name), plus
    ``--allowed-host`` (``*`` turns the check off)."""
    names: list[str] = list(extra)
    for name in extra:
        if name != "*" and ("*" in name[1:] or (name.startswith("*") and not name.startswith("*.")) or not name
                            or "/" in name):
            raise ConfigError(f"--allowed-host must be a host name or address ('*.example.com' for a domain, "
                              f"'*' for any), got {name[:80]!r}")
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
        host = (name.rsplit("]", 1)[0].lstrip("[") if name.startswith("[") else name.rsplit(":", 1)[0]).lower()
        if any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in self.allowed_hosts):
            await self.app(scope, receive, send)
            return
        await JSONResponse({"detail": f"this service does not answer to the Host {name[:80]!r}; serve "
                                      f"--allowed-host adds a name"}, status_code=400)(scope, receive, send)


class RedactTokens(logging.Filter):
    """Replaces the value of any ``token=`` in a URL of a log line by ``[redacted]`` (uvicorn's
    access and websocket lines log the path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(TOKEN_IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str):
            record.msg = TOKEN_IN_URL.sub(r"\1[redacted]", record.msg)
        return True


def redact_uvicorn_logs() -> None:
    """Add `RedactTokens` to uvicorn's loggers (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
