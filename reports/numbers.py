"""How a number is written in prose: rounded for reading, with the exact value kept alongside.

Findings wrap every number they quote in `<data value="EXACT">SHOWN</data>`: SHOWN is for the reader,
EXACT is the repr that results.csv holds, so a test (or a sceptical reader with view-source) can trace each
number back to its row. Rounding is to three significant figures, never in scientific notation, because
"310x" reads faster than "3.1e+02x" and three figures is finer than any CI we report.
"""

from __future__ import annotations

import html
import math

__all__ = ["shown", "data_tag", "null_for", "readable", "readable_tag", "percent_tag"]


def shown(number) -> str:
    """`number` rounded to 3 significant figures for prose: 35198.2 -> '35,198'; 0.52149 -> '0.521'."""
    if number is None or (isinstance(number, float) and not math.isfinite(number)):
        return "n/a"
    if isinstance(number, int) and not isinstance(number, bool):
        return f"{number:,}"  # a count is exact: no rounding, no decimals
    if number == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(number)))
    if magnitude >= 2:
        # Whole numbers from 100 up: extra digits are real digits, not noise, and cost nothing to read.
        return f"{round(number):,}"
    decimals = min(2 - magnitude, 12)
    text = f"{number:.{decimals}f}"
    return "0" if float(text) == 0 else text


def data_tag(number, suffix: str = "") -> str:
    """`<data value="repr">shown</data>` (plus a unit suffix outside the tag, such as 'x')."""
    exact = "n/a" if number is None else repr(number)
    return f'<data value="{html.escape(exact)}">{html.escape(shown(number))}</data>{html.escape(suffix)}'


def percent_tag(share: float) -> str:
    """A share (0-1) as a whole percentage: `<data value="0.8213">82%</data>` (the exact value kept)."""
    return f'<data value="{html.escape(repr(share))}">{round(100 * share)}%</data>'


def readable(value) -> str:
    """A number in a table or card, as people write it: 844600 -> '844,600'; 12.4456 -> '12.45';
    0.98125 -> '0.981'; True -> 'yes'. Anything else (text, None) is returned as its str()."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float) and math.isfinite(value):
        if abs(value) >= 1000:
            return f"{round(value):,}"
        if abs(value) >= 1:
            return f"{value:,.2f}"
        return shown(value)
    return str(value)


def readable_tag(value) -> str:
    """`readable(value)` for the reader with the exact number kept in `<data value>`; text is only escaped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(readable(value))
    return f'<data value="{html.escape(repr(value))}">{html.escape(readable(value))}</data>'


def null_for(metric: str) -> float:
    """The no-effect value of a metric: 1 for ratios, 0 for drops, differences and correlations."""
    return 1.0 if metric.endswith("ratio") else 0.0
