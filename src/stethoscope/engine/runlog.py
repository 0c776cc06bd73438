"""``run.json``: how far a multi-item run (one model per machine type) got.

Rewritten atomically after every change, so that an interrupted ``train`` shows which items
were trained, which one was running and which were not reached, and a resumed run can skip
the trained ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..fsutil import atomic_write_json

NOT_REACHED = "not reached"
RUNNING = "running"
TRAINED = "trained"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class RunLog:
    """Per-item status (``not reached``, ``running``, ``trained``, ``failed: <reason>``) kept in a
    file.

    Each item's record holds its status plus extra fields (times, ``seconds``, model path...)."""

    def __init__(
        self, path: str | Path, entries: Sequence[str], meta: dict[str, Any] | None = None
    ) -> None:
        self.path = Path(path)
        self.started = _now()
        self.resumed: list[str] = []
        self.meta = dict(meta or {})
        self.items: dict[str, dict[str, Any]] = {item: {"status": NOT_REACHED} for item in entries}
        self._write()

    @classmethod
    def resume(
        cls, path: str | Path, entries: Sequence[str], meta: dict[str, Any] | None = None
    ) -> RunLog:
        """Continue the run recorded in ``path`` (a new one if there is none).

        Trained items keep their record, also those not in ``entries`` (their models are still
        there); running and failed ones start over as not reached, and new entries are added.
        ``meta`` replaces the recorded one unless it is None."""
        path = Path(path)
        if not path.exists():
            return cls(path, entries, meta)
        old = _read(path)
        log = cls.__new__(cls)
        log.path, log.started = path, old["started"]
        log.resumed = [*old.get("resumed", []), _now()]
        log.meta = dict(old.get("meta", {})) if meta is None else dict(meta)
        trained = {item: rec for item, rec in old["items"].items() if rec["status"] == TRAINED}
        log.items = {item: trained.get(item, {"status": NOT_REACHED}) for item in entries}
        log.items.update({item: rec for item, rec in trained.items() if item not in log.items})
        log._write()
        return log

    def start(self, item: str) -> None:
        self.items[self._known(item)] = {"status": RUNNING, "started": _now()}
        self._write()

    def done(self, item: str, **info: Any) -> None:
        """Mark ``item`` trained, with extra fields such as ``seconds=`` or ``model=``."""
        record = self.items[self._known(item)]
        self.items[item] = {**record, "finished": _now(), **info, "status": TRAINED}
        self._write()

    def failed(self, item: str, reason: str) -> None:
        record = self.items[self._known(item)]
        self.items[item] = {**record, "status": f"failed: {reason}", "finished": _now()}
        self._write()

    def status(self, item: str) -> str:
        return self.items[self._known(item)]["status"]

    def _known(self, item: str) -> str:
        if item not in self.items:
            raise KeyError(f"{item!r} is not an item of the run logged in {self.path}")
        return item

    def _write(self) -> None:
        atomic_write_json(
            self.path,
            {
                "started": self.started,
                "resumed": self.resumed,
                "meta": self.meta,
                "items": self.items,
            },
        )


def _read(path: Path) -> dict[str, Any]:
    """A recorded run; CheckpointError naming the file if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{path}: corrupt run log ({err}); delete it to start the run over"
        ) from err
    items = data.get("items") if isinstance(data, dict) else None
    if not (
        isinstance(items, dict)
        and isinstance(data.get("started"), str)
        and isinstance(data.get("resumed", []), list)
        and isinstance(data.get("meta", {}), dict)
        and all(
            isinstance(rec, dict) and isinstance(rec.get("status"), str) for rec in items.values()
        )
    ):
        raise CheckpointError(
            f"{path}: not a run log (needs 'started' and 'items' with a "
            "'status' each); delete it to start the run over"
        )
    return data
