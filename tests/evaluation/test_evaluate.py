"""evaluate / format_table: the printed official score says what it averages, per layout."""

from __future__ import annotations

import numpy as np
import pytest

from stethoscope.evaluation.dcase_io import ScoredClip
from stethoscope.evaluation.evaluate import describe_official_score, evaluate, format_table
from stethoscope.evaluation.metrics import hmean


def _rows(
    layout: str, sections: tuple[str, ...], domains: tuple[str | None, ...]
) -> list[ScoredClip]:
    rng = np.random.default_rng(0)
    rows = []
    for sec in sections:
        for i in range(8):
            label = int(i >= 4)
            rows.append(
                ScoredClip(
                    f"{sec}_{i}.wav",
                    "fan",
                    sec,
                    label,
                    domains[i % len(domains)],
                    float(rng.normal() + label),
                    label,
                    layout=layout,
                )
            )
    return rows


def test_2020_official_score_is_auc_and_pauc_over_machine_ids():
    result = evaluate(_rows("dcase2020", ("00", "02"), (None,)))
    secs = list(result["machines"]["fan"]["sections"].values())
    expected = hmean([v for s in secs for v in (s["auc"], s["pauc"])])
    assert result["official_score"] == pytest.approx(expected)
    table = format_table(result)
    assert (
        f"official score (harmonic mean of AUC and pAUC over 2 machine IDs): {expected:.4f}"
        in table
    )
    assert "AUC-s, AUC-t" not in table.splitlines()[-1]


def test_2022_official_score_names_both_domains():
    result = evaluate(_rows("dcase2022", ("00",), ("source", "target")))
    sec = result["machines"]["fan"]["sections"]["section_00"]
    assert result["official_score"] == pytest.approx(
        hmean([sec["auc_source"], sec["auc_target"], sec["pauc"]])
    )
    assert (
        "official score (harmonic mean of AUC-s, AUC-t and pAUC over 1 section): "
        in format_table(result)
    )


def test_mixed_layouts_and_no_sections_are_described():
    with_domains = {"auc_source": 0.8, "auc_target": 0.6, "auc": 0.7, "pauc": 0.6}
    without = {"auc_source": None, "auc_target": None, "auc": 0.7, "pauc": 0.6}
    text = describe_official_score([("section_00", with_domains), ("section_01", without)])
    assert text == (
        "harmonic mean of AUC-s, AUC-t, AUC and pAUC over 2 sections "
        "(AUC where a section has no domains)"
    )
    assert describe_official_score([]).startswith("not available")
