"""``stethoscope calibrate --from-store DB --machine M [--model DIR]``: refit a machine's
threshold on the clips its operators marked "normal after all" in the monitor's event store.

Those clips are the labelled data a deployment gathers: each was scored at the plant, judged
by a person and kept (``serve --keep-audio``). With ``--model`` their kept audio is scored
again by that model and its threshold is refitted (the gamma fit of `workflows.calibrate`)
and written to its ``config.json`` with the calibration recorded. Without ``--model`` nothing
is written: the threshold the stored scores of those clips (by the newest model version that
scored them) would give is printed as a proposal.

A model folder keeps only a summary of its held-out training scores (n, median, p90, ...),
not the scores, so they cannot be pooled with the labelled clips; the summary is shown beside
the new fit for comparison.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..data.audio import SAMPLE_RATE
from ..engine import RunContext
from ..errors import ConfigError
from ..systems.base import load_system
from ..systems.threshold import gamma_threshold, score_summary
from .calibrate import Calibration, fit_gamma, save_calibration

MIN_LABELLED = 3  # fewer labelled normal clips give no usable gamma fit


def labelled_normals(db: str, machine: str) -> list[dict[str, Any]]:
    """The events of ``machine`` labelled normal in the store ``db`` (score, model version and
    kept FLAC bytes or None); a `ConfigError` for a missing store file."""
    from ..monitor.db import database_url
    from ..monitor.operators import Operators
    from ..monitor.service import check_machine_name
    from ..monitor.store import EventStore

    check_machine_name(machine)
    if "://" not in db and not Path(db).is_file():
        raise ConfigError(f"--from-store {db}: no such event store file")
    store = EventStore(database_url(db))
    try:
        return Operators(store).labelled_clips(machine, "normal")
    finally:
        store.close()


def _too_few(
    db: str, machine: str, rows: list[dict[str, Any]], usable: int, what: str
) -> ConfigError:
    return ConfigError(
        f"--from-store {db}: {len(rows)} event(s) of machine {machine!r} labelled normal, "
        f"{usable} {what}; a threshold fit needs at least {MIN_LABELLED}. Mark more events "
        f"normal (dashboard, or POST /events/{{id}}/label) while serve keeps their audio "
        f"(--keep-audio)"
    )


def calibrate_from_store(
    db: str,
    machine: str,
    model: str | Path | None,
    ctx: RunContext | None,
    percentile: float | None = None,
) -> Calibration:
    """Refit ``model``'s threshold on ``machine``'s clips labelled normal in ``db`` (see the
    module docstring); without ``model``, a proposal from their stored scores, nothing written."""
    if percentile is not None and not 0 < percentile < 1:
        raise ConfigError(f"--percentile must be in (0, 1), got {percentile}")
    rows = labelled_normals(db, machine)
    record: dict[str, Any] = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": sys.argv,
        "from_store": db if "://" in db else str(Path(db).resolve()),
        "machine": machine,
    }
    if model is None:
        newest = rows[-1]["model_version"] if rows else None
        scores = np.array(
            [r["score"] for r in rows if r["model_version"] == newest], dtype=np.float64
        )
        if len(scores) < MIN_LABELLED:
            raise _too_few(
                db, machine, rows, len(scores), f"scored by the newest model version ({newest})"
            )
        fraction = 0.9 if percentile is None else percentile
        return Calibration(
            None,
            gamma_threshold(scores, fraction),
            f"proposal: gamma fit at percentile "
            f"{fraction:g} of {len(scores)} stored scores of model {newest}",
            scores,
            record,
        )
    kept = [r for r in rows if r["flac"] is not None]
    if len(kept) < MIN_LABELLED:
        raise _too_few(db, machine, rows, len(kept), "with kept audio")
    system = load_system(model)
    old = system.threshold_
    waves = [_decode(bytes(r["flac"]), r["id"]) for r in kept]
    scores = np.asarray(system.score_waveforms(waves, SAMPLE_RATE, ctx), dtype=np.float64)
    trained = (system.run_ or {}).get("threshold") or {}
    record.update(
        previous_threshold=old,
        n_clips=len(kept),
        event_ids=[int(r["id"]) for r in kept],
        scores=score_summary(scores),
        training_scores=trained.get("heldout_scores") or trained.get("in_sample_scores"),
    )
    how = fit_gamma(system, scores, percentile, record)
    return save_calibration(
        system, model, old, scores, record, f"{how} clips marked normal in the store"
    )


def _decode(flac: bytes, event_id: int) -> np.ndarray:
    try:
        wave, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ConfigError(f"the kept audio of event {event_id} does not decode ({err})") from err
    if rate != SAMPLE_RATE:
        raise ConfigError(f"the kept audio of event {event_id} is at {rate} Hz, not {SAMPLE_RATE}")
    return np.asarray(wave, dtype=np.float32).reshape(-1)
