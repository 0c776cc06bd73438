"""The Markdown twin prints missing values as the HTML page does: a dash, or not at all; never
``None``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stethoscope.reports import build_report


@pytest.mark.parametrize(
    "results",
    [
        {},  # nothing recorded at all
        {
            "system": None,
            "data": None,
            "n_clips": None,
            "n_labelled": None,
            "seed": None,
            "official_score": None,
            "run": {
                "seed": None,
                "command": None,
                "python": None,
                "platform": None,
                "time_utc": None,
                "versions": {},
            },
        },
    ],
)
def test_missing_values_never_print_as_none(tmp_path: Path, results: dict):
    (tmp_path / "results.json").write_text(json.dumps(results))
    html = build_report(tmp_path, tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    assert "None" not in md and "None" not in html
    assert "- seed:" not in md and ">seed<" not in html  # an unrecorded fact is left out of both
    assert (
        "· – clips, 0 labelled" in md and '<div class="value">–</div>' in html
    )  # unknown counts: a dash in both
    assert "- versions: not recorded" in md and "<span>not recorded</span>" in html
    facts_md = re.findall(r"^- ([^:]+): `", md, re.M)
    facts_html = re.findall(r"<dt>([^<]+)</dt>", html)
    assert (
        facts_md[:-1] == facts_html == ["results folder"]
    )  # same facts (the md adds `regenerate`)
