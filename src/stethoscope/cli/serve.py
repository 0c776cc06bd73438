"""``serve``: the monitoring service. Loads the models of one folder (one per machine type),
scores clips posted to ``/score`` and PCM streamed to ``/stream/{machine}``, and keeps every
score and alarm in an event store (SQLite file by default, any SQLAlchemy URL). See docs/monitor.md.

Token policy: writes and streams need a bearer token, from ``--token`` or ``$STETHOSCOPE_TOKEN``
(the environment keeps it out of ``ps``). Without one the service refuses to start, unless
``--no-token`` says that unauthenticated writes are wanted, which is allowed on a loopback
address only. ``--tokens FILE`` gives named tokens with scopes instead (`monitor.tokens`): the
name is the author of operator actions; ``--token`` is one token named ``admin``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from typing import Any

from ..engine import RunContext
from ..engine.context import available_cores
from ..errors import ConfigError, StethoscopeError
from .common import print_info, weights_dirs
from .flags import add_max_seconds, add_runtime
from .monitoring import (
    DEFAULT_DB,
    add_notify,
    load_notify_file,
    open_monitor,
    parse_alarm,
    start_notifier,
)

TOKEN_ENV = "STETHOSCOPE_TOKEN"
MIN_TOKEN = 16
DEFAULT_KEEP_AUDIO = (
    1000  # monitor.service.DEFAULT_KEEP_AUDIO (not imported: the serve extra may be missing)
)
NEW_TOKEN_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(args: argparse.Namespace) -> Any:
    """The tokens: `monitor.tokens.Tokens` of ``--tokens FILE``, the one token (a string, named
    ``admin`` with every scope), or None with ``--no-token``; a `ConfigError` saying what to do."""
    if getattr(args, "tokens", None):
        if args.token or args.no_token or os.environ.get(TOKEN_ENV):
            raise ConfigError(
                f"--tokens {args.tokens} names every token: leave out --token, "
                f"--no-token and ${TOKEN_ENV}"
            )
        from ..monitor.tokens import load_tokens

        return load_tokens(args.tokens)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.no_token:
        if token:
            raise ConfigError(
                f"--no-token was given but a token is set (--token or ${TOKEN_ENV}); choose one"
            )
        if not _is_loopback(args.host):
            raise ConfigError(
                f"--no-token on {args.host} would let anyone on the network post "
                f"scores: set ${TOKEN_ENV} instead (or bind to 127.0.0.1)"
            )
        return None
    if token is None:
        raise ConfigError(
            f"no token: set ${TOKEN_ENV} (or --token) so that only clients holding "
            f"it may write, e.g. export {TOKEN_ENV}=$({NEW_TOKEN_HINT}); or pass "
            "--no-token to accept unauthenticated writes on 127.0.0.1"
        )
    if len(token) < MIN_TOKEN:
        raise ConfigError(
            f"the token is {len(token)} characters; use at least {MIN_TOKEN}, e.g. {NEW_TOKEN_HINT}"
        )
    return token


def reads_protected(args: argparse.Namespace) -> bool:
    """Whether reads (events, alarms, machines, metrics, audio, pictures) need the token: on
    any address that is not loopback, unless ``--public-reads`` opens them on purpose; always
    with ``--protect-reads``."""
    if args.protect_reads and args.public_reads:
        raise ConfigError("--protect-reads and --public-reads contradict each other; choose one")
    return args.protect_reads or not (args.public_reads or _is_loopback(args.host))


def _require_extra() -> None:
    missing = []
    for module in ("fastapi", "uvicorn", "sqlalchemy", "prometheus_client", "websockets"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise StethoscopeError(
            f"`stethoscope serve` needs the serve extra ({', '.join(missing)} "
            "missing): pip install 'stethoscope[serve]'"
        )


def _check_limits(args: argparse.Namespace) -> None:
    """The numeric flags in range, or a `ConfigError` naming them and their values."""
    if args.workers < 1 or args.threads < 1 or args.max_body_mb <= 0 or not 0 <= args.port <= 65535:
        raise ConfigError(
            "need --workers >= 1, --threads >= 1, --max-body-mb > 0 and a port in "
            "0-65535; got "
            f"{args.workers}, {args.threads}, {args.max_body_mb} and {args.port}"
        )
    if args.keep_audio < 0:
        raise ConfigError(
            "--keep-audio must be 0 (keep no audio) or a number of clips per "
            f"machine, got {args.keep_audio}"
        )
    if (
        (args.keep_audio_mb is not None and args.keep_audio_mb < 0)
        or args.max_connections < 1
        or args.max_streams < 1
    ):
        raise ConfigError(
            "need --keep-audio-mb >= 0, --max-connections >= 1 and --max-streams "
            ">= 1; got "
            f"{args.keep_audio_mb}, {args.max_connections} and {args.max_streams}"
        )


def _access(token: Any, protect: bool) -> str:
    """Who may write and read, in words, for the start-up line."""
    writes = "writes need the token" if token else "writes are OPEN (--no-token)"
    if token is not None and not isinstance(token, str):
        writes = f"tokens {token.describe()}"
    return writes + ("; reads need it too" if protect and token else "; reads are open")


def _context(args: argparse.Namespace) -> RunContext:
    """The checked run context of the scoring (device and threads applied)."""
    ctx = RunContext(
        device=args.device, threads=args.threads, progress=False, weights_dirs=weights_dirs(args)
    )
    ctx.check_device()
    ctx.apply_threads()
    return ctx


def cmd_serve(args: argparse.Namespace) -> int:
    _require_extra()
    token = resolve_token(args)
    alarm = parse_alarm(args.alarm)
    _check_limits(args)
    from ..monitor import server
    from ..monitor.app import MAX_WINDOW_S, MIN_HOP_S, create_app
    from ..monitor.guard import check_origin, trusted_hosts

    if not MIN_HOP_S <= args.hop <= args.window <= MAX_WINDOW_S:
        raise ConfigError(
            f"need {MIN_HOP_S:g} <= --hop <= --window <= {MAX_WINDOW_S:g} seconds, "
            f"got {args.hop:g} and {args.window:g}"
        )
    hosts = trusted_hosts(args.host, args.allowed_host)
    origins = [check_origin(o) for o in args.allow_origin]
    say = (lambda message: None) if args.quiet else print_info
    ctx = _context(args)
    protect = reads_protected(args)
    notify = load_notify_file(args.notify)
    monitor = open_monitor(args, ctx, alarm, say, args.keep_audio)
    try:
        start_notifier(monitor, notify, say)
        app = create_app(
            monitor,
            token,
            max_body=int(args.max_body_mb * 1024 * 1024),
            workers=args.workers,
            protect_reads=protect,
            window=args.window,
            hop=args.hop,
            allow_origins=origins,
            allowed_hosts=hosts,
            max_streams=args.max_streams,
        )
        say(
            f"serving {len(monitor.models)} machine(s) ({', '.join(sorted(monitor.models))}) on "
            f"http://{args.host}:{args.port}; event store {monitor.store.where} (schema "
            f"v{monitor.store.version}); {_access(token, protect)}"
        )
        limits = server.Limits(max_connections=args.max_connections)
        server.run(app, args.host, args.port, limits, args.quiet)
    finally:
        monitor.close()
    return 0


def _add_store_flags(p: argparse.ArgumentParser) -> None:
    """Where the event store lives, what it keeps, and the alarm rule."""
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"SQLite file or SQLAlchemy URL of the event store (default ./{DEFAULT_DB})",
    )
    p.add_argument(
        "--alarm",
        metavar="K/N",
        help="alarm rule for every served machine: K of the "
        "last N decisions anomalous (default: a new "
        "machine gets 3/5, a known one keeps its)",
    )
    p.add_argument(
        "--keep-audio",
        type=int,
        default=DEFAULT_KEEP_AUDIO,
        metavar="N",
        help="keep the audio (FLAC, in the event store) of each machine's newest N "
        "scored clips, for the dashboard's player and pictures (default "
        f"{DEFAULT_KEEP_AUDIO}; 0 = keep none)",
    )
    p.add_argument(
        "--keep-audio-mb",
        type=float,
        metavar="MB",
        help="a byte budget for all kept "
        "audio: past it "
        "the oldest clips' audio (any machine) is dropped first (default: no budget "
        "beyond --keep-audio)",
    )
    p.add_argument(
        "--sync",
        default="full",
        choices=("full", "normal"),
        help="SQLite commit durability: full (default; survives power loss) or normal "
        "(survives a killed process, not a power cut)",
    )


def _add_access_flags(p: argparse.ArgumentParser) -> None:
    """Address, tokens and who may read and write."""
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this computer only)",
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--token",
        help=f"bearer token for writes and streams (default ${TOKEN_ENV}; the environment "
        f"keeps it out of `ps`)",
    )
    p.add_argument(
        "--tokens",
        metavar="FILE",
        help="YAML file of named, scoped tokens (read, operate, write), each from an "
        "environment variable or as its SHA-256; instead of --token (docs/monitor.md)",
    )
    p.add_argument(
        "--no-token", action="store_true", help="accept writes without a token (loopback only)"
    )
    p.add_argument(
        "--protect-reads",
        action="store_true",
        help="require the token for reads (events, alarms, "
        "machines, metrics, audio, pictures; /health and the dashboard page stay open) even on a "
        "loopback address (on any other address they always need it, unless --public-reads)",
    )
    p.add_argument(
        "--public-reads",
        action="store_true",
        help="on a non-loopback --host, leave reads open to "
        "everyone who can reach the address, on purpose (plant audio included)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin (https://host:port) allowed to write and stream "
        "besides the service's own; repeatable",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name the service answers to besides --host (a DNS name, the LAN "
        "address of a 0.0.0.0 bind; '*' turns the check off); repeatable",
    )


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    """Bounds on connections, streams, stream windows, workers and bodies."""
    p.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="connections served at once; more get 503 (default 64)",
    )
    p.add_argument(
        "--max-streams", type=int, default=16, help="websocket streams open at once (default 16)"
    )
    p.add_argument(
        "--window", type=float, default=10.0, help="default seconds per streamed score (default 10)"
    )
    p.add_argument(
        "--hop", type=float, default=1.0, help="default seconds between streamed scores (default 1)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=available_cores(),
        help="clips decoded and scored at once (default: the cores this process may use)",
    )
    p.add_argument(
        "--max-body-mb", type=float, default=50.0, help="largest request body in MB (default 50)"
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="HTTP service: score clips and PCM streams per machine, "
        "keep every score "
        "and alarm in an event store (needs the serve extra)",
    )
    p.add_argument(
        "--models",
        required=True,
        help="folder written by `train --out` (one "
        "sub-folder per machine type, or one model); "
        "requests name machines, never paths",
    )
    _add_store_flags(p)
    _add_access_flags(p)
    _add_limit_flags(p)
    add_max_seconds(p)
    add_notify(p)
    add_runtime(
        p, seed=False, cache=False, audio=False, threads=1
    )  # --threads per scoring: requests side by side
    p.set_defaults(func=cmd_serve)
