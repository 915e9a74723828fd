"""How a report writes a value: percentages with their spread, intervals, gains, sizes, and the
GitHub table they sit in. Shared by every view of a report (the leaderboard, the domain view)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from harness.report.stats import Summary

if TYPE_CHECKING:
    from harness.report.aggregate import Row

DASH = "–"


def pct(s: Summary | None, with_std: bool = True) -> str:
    if s is None or s.n == 0 or math.isnan(s.mean):
        return DASH
    if not with_std or s.n < 2:
        return f"{100 * s.mean:.2f}"
    return f"{100 * s.mean:.2f} ± {100 * s.std:.2f}"


def ci(s: Summary | None, low: float = 0.0, high: float = 1.0) -> str:
    """``[low, high]`` in points, clipped to the metric's range, or a dash when there is no
    interval (n < 2)."""
    if s is None or (s.interval is None and (s.n < 2 or math.isnan(s.ci95))) or math.isnan(s.low):
        return DASH  # a bootstrap's interval stands with one seed too: the test set is still a sample
    return f"[{100 * max(s.low, low):.2f}, {100 * min(s.high, high):.2f}]"


def num(s: Summary | None, fmt: str = "{:.1f}") -> str:
    if s is None or s.n == 0 or math.isnan(s.mean):
        return DASH
    return fmt.format(s.mean)


def human(n: float | None) -> str:
    if n is None:
        return DASH
    for unit, size in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}" if isinstance(n, float) else str(n)


SAME = "0 (same predictions)"  # a paired bootstrap with no width: the two cells agree on every test example


def gain(g: Summary | None) -> str:
    """A difference of two metrics in [0, 1], its interval clipped to [−100, +100] points (a
    bootstrap's interval stands with one seed too; a t interval needs two)."""
    if g is None or g.n == 0 or math.isnan(g.mean):
        return DASH
    if g.interval is not None and g.interval[0] == g.interval[1] == g.mean == 0:
        return SAME  # not a zero-width interval: no resample of the test set can tell the two apart
    shown = g.interval is not None and not math.isnan(g.low) or g.n >= 2 and not math.isnan(g.ci95)
    interval = f" [{100 * max(g.low, -1):+.2f}, {100 * min(g.high, 1):+.2f}]" if shown else ""
    return f"{100 * g.mean:+.2f}{interval}"


def strategy_name(r: Row) -> str:
    return f"`{r.label}`" if r.label == r.strategy else f"`{r.label}` ({r.strategy})"


def bold(text: str, on: bool) -> str:
    return f"**{text}**" if on and text != DASH else text


def table(head: list[str], body: list[list[str]], left: int = 1) -> list[str]:
    """A GitHub table; the first ``left`` columns left-aligned, the rest right-aligned."""
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join(":---" if i < left else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in body]
    return out


def value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return DASH if v is None else str(v)
