"""The evaluation's files: ``scores.csv`` rows as scored, ``results.json`` with metrics and run
record."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from stethoscope.evaluation.dcase_io import ScoredClip
from stethoscope.evaluation.outputs import finish_evaluation, write_scores_table

ROWS = [
    ScoredClip(
        file=f"section_00_source_test_{kind}_{i:04d}.wav",
        machine="fan",
        section="00",
        label=int(kind == "anomaly"),
        domain="source",
        score=float(i + 10 * (kind == "anomaly")),
        decision=int(kind == "anomaly"),
    )
    for kind in ("normal", "anomaly")
    for i in range(4)
]


def test_scores_table_keeps_every_row_and_the_exact_score(tmp_path: Path) -> None:
    write_scores_table(
        tmp_path / "scores.csv", [*ROWS[:1], ROWS[1]], [Path("/a.wav"), Path("/b.wav")]
    )
    with open(tmp_path / "scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["/a.wav", "/b.wav"] and rows[0]["section"] == "section_00"
    assert float(rows[1]["score"]) == ROWS[1].score and rows[0]["label"] == "0"


def test_finish_evaluation_writes_results_and_returns_them(tmp_path: Path) -> None:
    result = finish_evaluation(tmp_path, ROWS, {"system": "x", "seed": 3})
    assert json.loads((tmp_path / "results.json").read_text())["system"] == "x"
    assert result["run"]["seed"] == 3 and (tmp_path / "scores.csv").is_file()
    assert any(
        p.name.startswith("anomaly_score_") for p in tmp_path.iterdir()
    )  # the DCASE result CSVs
