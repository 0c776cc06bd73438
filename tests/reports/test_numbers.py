"""Readable numbers: plain notation at every magnitude, enough digits to tell values apart."""

from __future__ import annotations

import math

import pytest

from stethoscope.reports.maps import decision_title, new_figure
from stethoscope.reports.numbers import plain_formatter, readable


@pytest.mark.parametrize(
    "value, text",
    [
        (12345.678, "12,346"),
        (0.00042134, "0.0004213"),
        (1.5, "1.5"),
        (180.8, "180.8"),
        (-2.25, "-2.25"),
        (0.0, "0"),
        (1e-7, "0.0000001"),
        (3e9, "3,000,000,000"),
        (None, "–"),
        (math.inf, "inf"),
    ],
)
def test_readable(value, text):
    assert readable(value) == text


def test_readable_never_uses_exponents():
    for exponent in range(-12, 13):
        for mantissa in (1.0, 3.14159, 9.9999):
            text = readable(mantissa * 10.0**exponent)
            assert "e" not in text.lower(), text
            assert float(text.replace(",", "")) == pytest.approx(
                mantissa * 10.0**exponent, rel=1e-3, abs=1e-12
            )


def test_decision_title_is_plain_and_tells_score_from_threshold():
    assert (
        decision_title("a.wav", 123456.7, 98765.4)
        == "a.wav\nscore 123,457  ·  threshold 98,765  ·  ANOMALY"
    )
    assert decision_title("a.wav", 0.000123, None) == "a.wav\nscore 0.000123"
    # 4 digits would print both as 1: the title keeps digits until they differ
    assert (
        decision_title("b.wav", 1.00004, 1.00001)
        == "b.wav\nscore 1.00004  ·  threshold 1.00001  ·  ANOMALY"
    )


def test_plain_formatter_keeps_close_ticks_apart_without_offset():
    ax = new_figure((4, 3)).subplots()
    ax.plot([180.2, 180.5], [0, 1])
    ax.xaxis.set_major_formatter(plain_formatter())
    ax.figure.canvas.draw()
    ticks = ax.xaxis.get_major_locator()()
    labels = ax.xaxis.get_major_formatter().format_ticks(ticks)
    assert len(set(labels)) == len(labels) and all("e" not in t and "×" not in t for t in labels)
    assert ax.xaxis.get_major_formatter().get_offset() == ""
