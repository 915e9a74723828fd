"""Aggregated rows → a markdown leaderboard readable on GitHub as is. Pure and deterministic.

Layout: a legend, a summary table (pairs × strategies, the primary metric with its 95% CI),
then per pair a full table (every metric, gains over scratch and linear_probe, cost, rank,
Pareto flag), per-entity-type F1 for NER pairs, the failed runs, and the plots when given.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping

from harness.report.aggregate import GAIN_BASELINES, PARETO_COST, Row
from harness.report.stats import Summary

PCT_METRICS = ("accuracy", "macro_f1", "f1", "precision", "recall")
DASH = "–"

LEGEND = (
    "Metrics in %: mean ± sample std over seeds, [95% CI] from Student's t. "
    "**Bold**: the best strategy of its pair and every strategy not significantly different from it "
    "(two-sided seed-paired t-test at 5%, i.e. the CI of the per-seed difference contains 0; Welch's t-test "
    "when fewer than two seeds are shared; one seed cannot be told apart). "
    "Gains are seed-paired differences in points with their 95% CI. "
    f"◆: Pareto-optimal on (primary metric, `{PARETO_COST}` per run). "
    "⚠: failed seeds, counted in `seeds ok` and listed under the table, never dropped."
)


def pct(s: Summary | None, with_std: bool = True) -> str:
    if s is None or s.n == 0 or math.isnan(s.mean):
        return DASH
    if not with_std or s.n < 2:
        return f"{100 * s.mean:.2f}"
    return f"{100 * s.mean:.2f} ± {100 * s.std:.2f}"


def ci(s: Summary | None) -> str:
    """``[low, high]`` in points, or a dash when there is no interval (n < 2)."""
    if s is None or s.n < 2 or math.isnan(s.ci95):
        return DASH
    return f"[{100 * s.low:.2f}, {100 * s.high:.2f}]"


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


def gain(g: Summary | None) -> str:
    if g is None or g.n == 0:
        return DASH
    interval = "" if g.n < 2 else f" [{100 * g.low:+.2f}, {100 * g.high:+.2f}]"
    return f"{100 * g.mean:+.2f}{interval}"


def strategy_name(r: Row) -> str:
    return f"`{r.label}`" if r.label == r.strategy else f"`{r.label}` ({r.strategy})"


def seeds(r: Row) -> str:
    return f"{r.n_ok}/{r.n_ok + r.n_failed}" + (" ⚠" if r.n_failed else "")


def bold(text: str, on: bool) -> str:
    return f"**{text}**" if on and text != DASH else text


# Cost columns: header, formatter. A column no row has a non-zero value for is left out and named
# in a note under the table (CPU runs have no GPU memory, energy or GPU-hours).
def _cost(key: str, fmt: str) -> Callable[[Row], str]:
    return lambda r: num(r.cost.get(key), fmt)


COST_COLUMNS: list[tuple[str, str, Callable[[Row], str]]] = [
    ("wall_s", "wall s", _cost("wall_s", "{:.1f}")),
    ("train_s", "train s", _cost("train_s", "{:.1f}")),
    ("eval_s", "eval s", _cost("eval_s", "{:.1f}")),
    ("feature_s", "feature s", _cost("feature_s", "{:.1f}")),
    ("samples_per_s", "samples/s", _cost("samples_per_s", "{:.0f}")),
    ("train_flops", "train FLOPs", lambda r: human(r.cost["train_flops"].mean) if "train_flops" in r.cost else DASH),
    ("peak_rss_mb", "peak RSS MB", _cost("peak_rss_mb", "{:.0f}")),
    ("peak_gpu_mem_mb", "peak GPU MB", _cost("peak_gpu_mem_mb", "{:.0f}")),
    ("peak_gpu_reserved_mb", "GPU reserved MB", _cost("peak_gpu_reserved_mb", "{:.0f}")),
    ("energy_j", "energy J", _cost("energy_j", "{:.0f}")),
    ("gpu_hours", "GPU-h", _cost("gpu_hours", "{:.4f}")),
    ("price", "price", _cost("price", "{:.4f}")),
]


def _measured(rows: list[Row], key: str) -> bool:
    return any(key in r.cost and r.cost[key].mean != 0 for r in rows)


def params_cell(r: Row) -> str:
    tr, tot = r.params
    frac = f" ({100 * tr / tot:.2f}%)" if tr is not None and tot else ""
    return f"{human(tr)} / {human(tot)}{frac}"


def table(head: list[str], body: list[list[str]], left: int = 1) -> list[str]:
    """A GitHub table; the first ``left`` columns left-aligned, the rest right-aligned."""
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join(":---" if i < left else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(cells) + " |" for cells in body]
    return out


def metric_order(rows: list[Row]) -> list[str]:
    metrics = [m for m in PCT_METRICS if any(m in r.metrics for r in rows)]
    primary = rows[0].primary
    return [primary, *[m for m in metrics if m != primary]] if primary in metrics else metrics


def render_pair(rows: list[Row], assets: Mapping[str, str] | None = None) -> list[str]:
    first = rows[0]
    metrics = metric_order(rows)
    primary = metrics[0] if metrics else None
    out = [f"### {first.pair}", "",
           f"Task: `{first.task}` · primary metric: **{primary}** · ranked by its mean", ""]
    baselines = [b for b in GAIN_BASELINES if any(b in r.gains for r in rows)]
    costs = [c for c in COST_COLUMNS if _measured(rows, c[0])]
    head = ["rank", "strategy"]
    if primary:
        head += [f"{primary} (± std)", "95% CI"]
    head += [f"{m} (± std)" for m in metrics[1:]]
    head += ["seeds ok"] + [f"gain vs {b} (95% CI)" for b in baselines]
    head += [c[1] for c in costs] + ["trainable / total params", "Pareto"]
    body = []
    for r in rows:
        cells = [str(r.rank) if r.rank else DASH, strategy_name(r)]
        if primary:
            cells += [bold(pct(r.metrics.get(primary)), r.tied), ci(r.metrics.get(primary))]
        cells += [pct(r.metrics.get(m)) for m in metrics[1:]]
        cells.append(seeds(r))
        cells += [gain(r.gains.get(b)) for b in baselines]
        cells += [fmt(r) for _, _, fmt in costs]
        cells += [params_cell(r), "◆" if r.pareto else ""]
        body.append(cells)
    out += table(head, body, left=2)
    missing = [c[1] for c in COST_COLUMNS if c not in costs]
    if missing:
        out += ["", f"Not measured (or zero for every strategy) on this hardware: {', '.join(missing)}."]
    out += render_per_label(rows)
    failures = [f"- `{r.label}` {f}" for r in rows for f in r.failures]
    if failures:
        out += ["", "Failed runs (counted above, not dropped):", *failures]
    if assets:
        out.append("")
        if "pareto" in assets:
            out.append(f"![{primary} vs {PARETO_COST}, {first.pair}]({assets['pareto']})")
        if "curve" in assets:
            out.append(f"![validation {primary} per epoch, {first.pair}]({assets['curve']})")
    return out + [""]


def render_per_label(rows: list[Row]) -> list[str]:
    """Per-entity-type F1 of token-classification pairs (entity types as columns)."""
    if rows[0].task != "token-classification":
        return []
    types = sorted({t for r in rows for t in r.per_label})
    if not types:
        return []
    body = [[strategy_name(r)] + [pct(r.per_label.get(t), with_std=False) for t in types] for r in rows]
    return ["", "Per-entity-type F1 (%, mean over seeds):", "", *table(["strategy", *types], body)]


def summary_columns(rows: list[Row]) -> list[str]:
    """Strategy labels for the summary table: the gain baselines first, then alphabetical."""
    labels = {r.label for r in rows}
    base = [b for b in GAIN_BASELINES if b in labels]
    return base + sorted(labels - set(base))


def render_summary(by_pair: Mapping[str, list[Row]]) -> list[str]:
    rows = [r for pair_rows in by_pair.values() for r in pair_rows]
    labels = summary_columns(rows)
    body = []
    for pair, pair_rows in by_pair.items():
        cell = {r.label: r for r in pair_rows}
        cells = [pair, f"{pair_rows[0].primary or DASH}"]
        for label in labels:
            r = cell.get(label)
            if r is None:
                cells.append("")
                continue
            s = r.score
            text = bold(pct(s, with_std=False), r.tied)
            if s.n >= 2:
                text += f" {ci(s)}"
            if r.n_failed:
                text += f" ⚠ {seeds(r).removesuffix(' ⚠')}"
            cells.append(text)
        body.append(cells)
    return ["## Summary", "", "Primary metric per pair, % mean [95% CI].", "",
            *table(["pair", "metric", *[f"`{label}`" for label in labels]], body, left=2), ""]


def render(rows: list[Row], title: str | None = None,
           assets: Mapping[str, Mapping[str, str]] | None = None) -> str:
    """The leaderboard of one suite (rows of one suite and smoke flag).

    ``assets`` maps a pair id to relative links of its plots (``pareto``, ``curve``).
    """
    if not rows:
        return f"# {title or 'Leaderboard'}\n\nNo records.\n"
    suite, smoke = rows[0].suite, rows[0].smoke
    n_runs = sum(r.n_ok + r.n_failed for r in rows)
    n_failed = sum(r.n_failed for r in rows)
    lines = [f"# {title or f'Leaderboard: {suite}'}", ""]
    if smoke:
        lines += ["> **Smoke run**: every cell trained for a handful of steps to check the suite end to end. "
                  "The numbers below are not results.", ""]
    lines += [f"Generated by `harness report` from {n_runs} run records ({n_failed} failed).", "", LEGEND, ""]
    by_pair: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_pair[r.pair].append(r)
    lines += render_summary(by_pair)
    lines += ["## Per pair", ""]
    for pair, pair_rows in by_pair.items():
        lines += render_pair(pair_rows, (assets or {}).get(pair))
    return "\n".join(lines).rstrip() + "\n"
