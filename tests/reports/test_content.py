"""Report content: clip counts that add up, and the official score described as the layout computes
it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from stethoscope.evaluation.dcase_io import ScoredClip
from stethoscope.evaluation.evaluate import evaluate
from stethoscope.reports import build_report
from stethoscope.reports.content import headline, machine_part
from stethoscope.reports.results import ScoreRow


def _valve_2020() -> list[ScoredClip]:
    """DCASE 2020 valve as in the measured report: id_02 has 5 normal + 5 anomalous clips, the
    other IDs only 2 anomalous ones each (their normals are elsewhere), so evaluate skips them."""
    rng = np.random.default_rng(0)
    rows = [
        ScoredClip(
            f"{kind}_id_02_{i:08d}.wav",
            "valve",
            "02",
            int(kind == "anomaly"),
            None,
            float(rng.normal() + (kind == "anomaly")),
            0,
            layout="dcase2020",
        )
        for kind in ("normal", "anomaly")
        for i in range(5)
    ]
    rows += [
        ScoredClip(
            f"anomaly_id_{sec}_{i:08d}.wav",
            "valve",
            sec,
            1,
            None,
            float(rng.normal() + 1),
            1,
            layout="dcase2020",
        )
        for sec in ("00", "04", "06")
        for i in range(2)
    ]
    return rows


def _score_rows(rows: list[ScoredClip]) -> list[ScoreRow]:
    return [
        ScoreRow(r.file, "", r.machine, r.section_tag, r.domain, r.label, r.score, r.decision)
        for r in rows
    ]


def test_card_and_table_counts_agree_when_sections_are_skipped(tmp_path: Path):
    scored = _valve_2020()
    results = evaluate(scored)
    assert len(results["skipped"]) == 3
    part = machine_part("valve", "valve", results, _score_rows(scored), tmp_path)
    assert part.counts == "5 normal, 11 anomalous"
    counts = [(m["n_normal"], m["n_anomaly"]) for _, kind, m in part.rows if kind != "mean"]
    assert tuple(map(sum, zip(*counts, strict=True))) == (
        5,
        11,
    )  # the table's rows add up to the card's counts
    assert [label for label, _, _ in part.rows] == [
        "id_00 (no metrics: no normal clips)",
        "id_02",
        "id_04 (no metrics: no normal clips)",
        "id_06 (no metrics: no normal clips)",
    ]
    assert (
        "Metrics cover 1 of 4 sections: 5 normal and 5 anomalous of the 5 normal and 11 "
        "anomalous clips; "
        "id_00, id_04, id_06 lack one of the two labels."
    ) in part.notes
    assert part.official_meaning == "harmonic mean of AUC and pAUC over 1 machine ID"


def test_2020_report_names_what_the_official_score_averages(tmp_path: Path):
    scored = _valve_2020()
    results = evaluate(scored)
    assert (
        headline(results)["official_meaning"] == "harmonic mean of AUC and pAUC over 1 machine ID"
    )
    (tmp_path / "results.json").write_text(json.dumps({"system": "x", **results}))
    lines = ["file,path,machine,section,domain,label,score,decision"]
    lines += [
        f"{r.file},,{r.machine},{r.section_tag},,{r.label},{r.score!r},{r.decision}" for r in scored
    ]
    (tmp_path / "scores.csv").write_text("\n".join(lines) + "\n")
    html = build_report(tmp_path, tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    for text in (html, md):
        assert "AUC-s" not in text and "AUC-t" not in text
        assert "harmonic mean of AUC and pAUC over 1 machine ID" in text
    assert "5 normal, 11 anomalous test clips" in html
    table = html.split("<table>", 1)[1].split("</table>", 1)[0]
    cells = [tuple(map(int, c)) for c in re.findall(r"<td>(\d+) / (\d+)</td>", table)]
    assert tuple(map(sum, zip(*cells, strict=True))) == (5, 11)
