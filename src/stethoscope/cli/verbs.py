"""The verbs of the command line, in the order ``--help`` lists them. Each verb module declares
its own flags (``add_parser(sub)``, shared flags from `flags`) and its command (``cmd_<verb>``)."""

from __future__ import annotations

from types import ModuleType

from . import (
    bench,
    cache,
    calibrate,
    demo,
    download,
    evaluate,
    explain,
    export,
    listing,
    report,
    scan,
    score,
    serve,
    stream,
    toy,
    train,
    watch,
)

VERBS: dict[str, ModuleType] = {
    "demo": demo,
    "train": train,
    "score": score,
    "evaluate": evaluate,
    "bench": bench,
    "stream": stream,
    "explain": explain,
    "scan": scan,
    "report": report,
    "toy": toy,
    "calibrate": calibrate,
    "list": listing,
    "cache": cache,
    "serve": serve,
    "watch": watch,
    "download": download,
    "export": export,
}
