"""Numbers a person reads: positional notation, thousands separated, never ``1.2e+03``.

Scores span many magnitudes (a Mahalanobis score of 12,345, a reconstruction error of
0.00042); scientific notation makes them hard to compare at a glance, so titles, legends and
tables print through `readable`, axis ticks through `plain_formatter`.
"""

from __future__ import annotations

import math

from matplotlib.ticker import Formatter, FuncFormatter, ScalarFormatter

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


def plain_formatter(log: bool = False) -> Formatter:
    """Tick labels in plain notation: no offset (``+1.8e2``), no multiplier (``×10⁻⁵``), no
    ``10^k``.

    On a linear axis the decimals follow the tick spacing, so close ticks stay apart; on a log
    axis every tick is a different power and prints through `readable` (``0.001``, ``1,000``).
    """
    if log:
        return FuncFormatter(lambda v, _: readable(v, 3))
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    return formatter
