"""Scoring with trained models: files and folders (``stethoscope score``), a labelled data
folder with one model per machine type, or submission CSVs against ground truth
(``stethoscope evaluate``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.clip import Clip
from ..engine import RunContext
from ..evaluation.dcase_io import ScoredClip, read_submission
from ..evaluation.outputs import finish_evaluation, write_scores_table
from ..systems.base import System, load_system
from ..systems.folders import model_folder_for
from .data import audio_clips, by_machine, resolve_channel, scan


@dataclass
class Scores:
    """What one model scored: the system, the files of the rows, and one row per scored clip."""

    system: System
    paths: list[Path]
    rows: list[ScoredClip]


def scored(
    system: System, clips: Sequence[Clip], ctx: RunContext
) -> tuple[list[Path], list[ScoredClip]]:
    """(paths, rows) of the clips scored: those the audio checks left out have no row, nor
    those whose score is not finite (e.g. samples far beyond full scale): each of these is
    left out with a warning line and listed in skipped.csv."""
    from ..data.policy import current_policy, not_finite

    scores = system.score(clips, ctx)
    policy = current_policy()
    for clip, score in zip(clips, scores, strict=True):
        if not np.isfinite(score) and not policy.is_skipped(
            clip.path
        ):  # NaN alone: left out by the checks
            policy.leave_out(clip.path, not_finite(score))
    kept = [i for i, s in enumerate(scores) if np.isfinite(s)]
    decisions = system.decide(scores[kept])
    return [Path(clips[i].path) for i in kept], [
        ScoredClip(
            file=clips[i].name,
            machine=clips[i].machine,
            section=clips[i].section,
            label=clips[i].label,
            domain=clips[i].domain,
            score=float(scores[i]),
            decision=int(d),
            layout=clips[i].layout,
        )
        for i, d in zip(kept, decisions, strict=True)
    ]


def score_paths(
    model: str | Path,
    paths: Sequence[str | Path],
    ctx: RunContext,
    channel: str | None = None,
    csv: Path | None = None,
) -> Scores:
    """Score audio files and folders with the model in ``model`` (``channel``: None for the
    model's own); with ``csv`` also write the rows there (`evaluation.outputs.write_scores_table`).
    Each file is opened once: its bytes serve the hash, the header check and the decode."""
    system = load_system(model)
    machine = (system.run_ or {}).get("data_machine", "unknown")
    min_seconds = system.feature_request().min_seconds
    clips = audio_clips(
        paths, resolve_channel(channel, system), machine, min_seconds, headers=False
    )  # each file read once, by the decoding pass
    kept, rows = scored(system, clips, ctx)
    if csv is not None:
        write_scores_table(csv, rows, kept)
    return Scores(system, kept, rows)


def evaluate_folder(
    data: str | Path,
    models: str | Path,
    out: Path,
    ctx: RunContext,
    layout: str = "auto",
    machine: str | None = None,
    channel: str | None = None,
) -> dict[str, Any]:
    """Score the test clips of ``data`` (all its clips where it has no test split) with each
    machine type's model in ``models``; writes and returns the evaluation (`finish_evaluation`)."""
    clips = scan(
        data, layout, machine, resolve_channel(channel), headers=False
    )  # each file read once, when decoded
    rows: list[ScoredClip] = []
    paths: list[Path] = []
    folders: dict[str, str] = {}
    thresholds: dict[str, float | None] = {}
    names: set[str] = set()
    for name, mclips in by_machine(clips).items():
        test = [c for c in mclips if c.split == "test"] or mclips
        model_dir = model_folder_for(models, name)
        system = load_system(model_dir)
        own = resolve_channel(channel, system)  # each machine type's model reads its own channel
        test = [dataclasses.replace(c, channel=own) for c in test]
        folders[name], thresholds[name] = str(model_dir.resolve()), system.threshold_
        names.add(system.name)
        kept, scored_rows = scored(system, test, ctx)
        rows, paths = rows + scored_rows, paths + kept
    return finish_evaluation(
        out,
        rows,
        {
            "system": ",".join(sorted(names)),
            "data": str(data),
            "models": folders,
            "thresholds": thresholds,
        },
        paths,
    )


def evaluate_submission(scores: str | Path, ground_truth: str | Path, out: Path) -> dict[str, Any]:
    """Evaluate DCASE submission CSVs (``anomaly_score_*``, ``decision_result_*``) against the
    ground truth folders; writes and returns the evaluation."""
    rows = read_submission(scores, ground_truth)
    return finish_evaluation(
        out, rows, {"scores": str(scores), "ground_truth": str(ground_truth)}, result_csvs=False
    )
