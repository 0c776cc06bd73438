"""Batch scoring of a fleet's recordings on Ray Data (``score --engine ray``, `score_with_ray`).

The pipeline, streamed so that memory stays bounded whatever the number of files:

1. the driver lists the inputs (`sources.list_inputs`) and gives every file its machine
   type's model (`sources.assign_models`);
2. Ray Data map tasks read each file (a local path or any ``pyarrow.fs`` / fsspec URI), decode
   it once, check it with the run's audio policy and compute what that type's model reads
   (log-mel and/or the 16 kHz waveform), batch by batch;
3. scoring actors (``map_batches`` with an actor class) load each model once per actor, on first
   use, and score a batch per machine type with `System.score_decoded`, the same call the
   single-process `System.score` makes, so scores agree with it;
4. the driver replays each file's audio findings through its own policy (an error stops the
   job naming the file; skipped and warned files are recorded once, as in a local run) and
   keeps one small row per file, written as Parquet and the usual CSVs.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.audio import SAMPLE_RATE, decode_checked, read_file
from ..data.clip import Clip, parse_channel
from ..data.policy import AudioPolicy, current_policy, not_finite
from ..data.quality import DEFAULT_MAX_SECONDS, Problem
from ..engine.context import RunContext
from ..errors import AudioError, AudioSkipped, ConfigError
from ..evaluation.dcase_io import ScoredClip, write_result_csvs
from ..features.extract import Decoded, FeatureRequest, decode_waves
from ..fsutil import atomic_write_bytes
from ..systems.base import System, load_system
from ..systems.folders import model_folders
from ._ray import ray_session
from .sources import assign_models, is_uri, list_inputs, resolve_filesystem

BATCH = 32  # files per decode task batch and per scoring call


@dataclass(frozen=True)
class ModelSpec:
    """What the decode tasks need to know of one machine type's model."""

    folder: str
    request: FeatureRequest
    channel: int | None
    sample_rate: int


def model_spec(folder: str | Path, system: System, channel: int | str | None = None) -> ModelSpec:
    """A model's `ModelSpec`; ``channel`` overrides the channel the model was trained on."""
    request = system.feature_request()
    recorded = (system.run_ or {}).get("channel", 0)
    rate = request.logmel.sample_rate if request.logmel else SAMPLE_RATE
    return ModelSpec(
        str(folder), request, parse_channel(recorded if channel is None else channel), rate
    )


def _read(path: str, policy: AudioPolicy, filesystem: Any) -> bytes:
    """A file's bytes, local (the policy refuses what is not a regular file) or through a
    filesystem."""
    if filesystem is None and not is_uri(path):
        return read_file(path, policy)
    try:
        fs, inner = resolve_filesystem(path, filesystem)
        with fs.open_input_stream(inner) as handle:
            return handle.read()
    except (OSError, ConfigError) as err:
        policy.refuse(path, Problem(f"cannot read file ({err})", unreadable=True))


def decode_batch(
    batch: dict[str, np.ndarray],
    specs: Mapping[str, ModelSpec],
    on_bad_audio: str | None,
    filesystem: Any = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> dict[str, np.ndarray]:
    """A Ray Data map task: read, decode, check and featurise a batch of files.

    Each file is read once (its bytes serve the header check, ``max_seconds`` included, and the
    decode) and judged by a policy of the run's kind that says nothing; its findings travel
    with the row (``problems``: JSON [reason, unreadable] pairs, ``error``: the message of a file
    the policy refuses), for the driver to replay. Rows left out keep empty arrays."""
    n = len(batch["path"])
    waves: list[np.ndarray] = [np.zeros(0, np.float32)] * n
    error, problems = [""] * n, ["[]"] * n
    for i, (path, machine) in enumerate(zip(batch["path"], batch["machine"], strict=True)):
        spec = specs[machine]
        policy = AudioPolicy(on_bad_audio, say=lambda message: None, max_seconds=max_seconds)
        try:
            raw = _read(path, policy, filesystem)
            waves[i] = decode_checked(
                raw, path, spec.sample_rate, spec.channel, spec.request.min_seconds, policy
            )[0]
        except AudioSkipped:
            pass
        except AudioError as err:
            error[i] = err.problem
        problems[i] = json.dumps([[f.reason, f.action == "skipped"] for f in policy.findings])
    ok = np.array([len(w) > 0 for w in waves])
    logmels: list[np.ndarray] = [np.zeros((0, 0), np.float32)] * n
    for machine in set(batch["machine"]):
        rows = [i for i in range(n) if ok[i] and batch["machine"][i] == machine]
        request = specs[machine].request
        if rows and request.logmel is not None:
            mels = decode_waves(
                [waves[i] for i in rows], specs[machine].sample_rate, request
            ).logmels
            for i, mel in zip(rows, mels or [], strict=False):
                logmels[i] = mel
        if not request.wave:
            for i in rows:
                waves[i] = np.zeros(0, np.float32)  # not needed downstream: keep the blocks small
    return {
        "index": batch["index"],
        "path": batch["path"],
        "machine": batch["machine"],
        "ok": ok,
        "error": np.array(error, dtype=object),
        "problems": np.array(problems, dtype=object),
        "wave": _ragged(waves),
        "logmel": _ragged(logmels),
    }


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array of arrays (Ray Data stores it as a variable-shaped tensor column)."""
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out


class Scorer:
    """A Ray Data scoring actor: each machine type's model loaded once, on first use."""

    def __init__(self, specs: Mapping[str, ModelSpec], ctx: RunContext) -> None:
        self.specs, self.ctx = dict(specs), ctx
        self.systems: dict[str, System] = {}
        ctx.apply_threads()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["path"])
        scores, decisions = np.full(n, np.nan), np.zeros(n, dtype=np.int8)
        for machine in set(batch["machine"][batch["ok"]]):
            rows = np.flatnonzero(batch["ok"] & (batch["machine"] == machine))
            if machine not in self.systems:
                self.systems[machine] = load_system(self.specs[machine].folder)
            system, spec = self.systems[machine], self.specs[machine]
            decoded = Decoded(
                keys=[""] * len(rows),
                clips=[
                    Clip(path=batch["path"][i], machine=machine, channel=spec.channel) for i in rows
                ],
                index=list(range(len(rows))),
            )
            if spec.request.wave:
                decoded.waves = [np.asarray(batch["wave"][i], np.float32) for i in rows]
            if spec.request.logmel is not None:
                decoded.logmels = [np.asarray(batch["logmel"][i], np.float32) for i in rows]
            scores[rows] = system.score_decoded(decoded, self.ctx)
            decisions[rows] = system.decide(scores[rows])
        return {
            "index": batch["index"],
            "path": batch["path"],
            "machine": batch["machine"],
            "ok": batch["ok"],
            "error": batch["error"],
            "problems": batch["problems"],
            "score": scores,
            "decision": decisions,
        }


def score_with_ray(
    inputs: Sequence[str | Path],
    models: str | Path | Mapping[str, str | Path],
    out: str | Path | None = None,
    *,
    ctx: RunContext | None = None,
    channel: int | str | None = None,
    actors: int | None = None,
    address: str | None = None,
    cpus: int | None = None,
    filesystem: Any = None,
) -> tuple[list[str], list[ScoredClip]]:
    """Score every audio file of ``inputs`` (files, folders, URIs) with its machine type's model
    from ``models`` on Ray Data; returns (paths, rows) in input order, for the files the audio
    policy kept. With ``out``: ``scores.parquet``, ``scores.csv`` and the DCASE result CSVs.

    ``actors``: scoring actors (default: one per CPU of the session, or per GPU with ``ctx.device``
    cuda). A Ray session the caller started is used, else one is started (``address``, or a
    local one of ``cpus`` CPUs) and shut down at the end."""
    ctx = ctx or RunContext(progress=False)
    folders = (
        {str(m): Path(f) for m, f in models.items()}
        if isinstance(models, Mapping)
        else model_folders(models, flag="--model")
    )
    systems = {m: load_system(folder) for m, folder in folders.items()}
    specs = {m: model_spec(folders[m], s, channel) for m, s in systems.items()}
    files = list_inputs(inputs, filesystem)
    machines = assign_models(files, folders)
    items = [
        {"index": i, "path": p, "machine": m}
        for i, (p, m) in enumerate(zip(files, machines, strict=True))
    ]
    policy = current_policy()
    kept: dict[int, tuple[str, ScoredClip]] = {}
    if items:
        with ray_session(address, cpus, ctx.progress) as ray:
            ds = _pipeline(ray, items, specs, ctx, actors, policy, filesystem)
            for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
                kept.update(_judged(batch, policy))
    order = sorted(kept)
    paths, rows = [kept[i][0] for i in order], [kept[i][1] for i in order]
    if out is not None:
        write_outputs(Path(out), paths, rows, {m: s.threshold_ for m, s in systems.items()})
    return paths, rows


def _pipeline(
    ray: Any,
    items: list[dict[str, Any]],
    specs: Mapping[str, ModelSpec],
    ctx: RunContext,
    actors: int | None,
    policy: AudioPolicy,
    filesystem: Any,
) -> Any:
    """The Ray Data dataset: blocks of `BATCH` files, decode tasks, scoring actors."""
    gpu = ctx.device.startswith("cuda")
    n_actors = actors or max(1, int(ray.cluster_resources().get("GPU" if gpu else "CPU", 1)))
    blocks = min(len(items), max(n_actors, math.ceil(len(items) / BATCH)))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(
        decode_batch,
        batch_size=BATCH,
        batch_format="numpy",
        num_cpus=1,
        fn_kwargs={
            "specs": specs,
            "on_bad_audio": policy.on_bad_audio,
            "filesystem": filesystem,
            "max_seconds": policy.max_seconds,
        },
    )
    # on CPUs Ray Data fuses the decode map into the actors (no features through the object
    # store); a GPU actor takes a GPU, and the decode tasks stay CPU tasks that feed it
    return ds.map_batches(
        Scorer,
        batch_size=BATCH,
        batch_format="numpy",
        fn_constructor_kwargs={"specs": specs, "ctx": ctx.replace(cache_dir=None, progress=False)},
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        **({"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}),
    )


def _judged(
    batch: Mapping[str, np.ndarray], policy: AudioPolicy
) -> dict[int, tuple[str, ScoredClip]]:
    """{input index: (path, row)} of a result batch's files that ``policy`` keeps, after replaying
    each file's findings through it; the first file it refuses raises its `AudioError`. A score
    that is not finite is never kept: the file is left out as skipped, with the reason (as
    `workflows.scoring.scored` does)."""
    kept = {}
    for i in range(len(batch["index"])):
        path = str(batch["path"][i])
        if batch["error"][i]:
            raise AudioError(path, str(batch["error"][i]))
        found = [
            Problem(reason, unreadable) for reason, unreadable in json.loads(batch["problems"][i])
        ]
        if policy.judge(path, found) and batch["ok"][i]:
            if not np.isfinite(batch["score"][i]):
                policy.leave_out(path, not_finite(float(batch["score"][i])))
                continue
            kept[int(batch["index"][i])] = (
                path,
                ScoredClip(
                    file=Path(path).name,
                    machine=str(batch["machine"][i]),
                    section="00",
                    label=None,
                    domain=None,
                    score=float(batch["score"][i]),
                    decision=int(batch["decision"][i]),
                    layout="folder",
                ),
            )
    return kept


def write_outputs(
    out: Path,
    paths: Sequence[str],
    rows: Sequence[ScoredClip],
    thresholds: Mapping[str, float | None],
) -> Path:
    """``scores.parquet`` (path, file, machine, score, decision, threshold), ``scores.csv`` and the
    DCASE result CSVs in ``out``, each written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..evaluation.outputs import write_scores_table

    out.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "path": list(paths),
            "file": [r.file for r in rows],
            "machine": [r.machine for r in rows],
            "score": pa.array([r.score for r in rows], pa.float64()),
            "decision": pa.array([r.decision for r in rows], pa.int8()),
            "threshold": pa.array([thresholds.get(r.machine) for r in rows], pa.float64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(out / "scores.parquet", buf.getvalue())
    write_scores_table(out / "scores.csv", rows, [Path(p) for p in paths])
    write_result_csvs(out, rows)
    return out / "scores.parquet"
