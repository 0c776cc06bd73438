"""Numbers a person reads: positional notation, thousands separated, never ``1.2e+03``.

Scores span many magnitudes (a Mahalanobis score of 12,345, a reconstruction error of
0.00042); scientific notation makes them hard to compare at a glance, so titles, legends,
axis ticks and tables all print through `readable`.
"""
from __future__ import annotations

import math

from matplotlib.ticker import FuncFormatter

MAX_DECIMALS = 20


def readable(value: float | None, digits: int = 4) -> str:
    """``value`` rounded to ``digits`` significant digits in plain notation (``12,346``,
    ``0.0004213``, ``1.5``); a dash when missing, ``inf``/``nan`` as such."""
    if value is None:
        return "–"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = min(max(digits - 1 - magnitude, 0), MAX_DECIMALS)
    text = f"{value:,.{decimals}f}"
    text = text.rstrip("0").rstrip(".") if decimals else text
    return "0" if text in ("-0", "") else text


def readable_formatter(digits: int = 4) -> FuncFormatter:
    """A matplotlib tick formatter printing through `readable`."""
    return FuncFormatter(lambda v, _: readable(v, digits))
