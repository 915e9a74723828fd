"""Aggregated rows → a markdown leaderboard readable on GitHub as is. Pure and deterministic.

Layout: a legend, a summary table (strategies as rows, pairs as columns: the primary metric with
its 95% CI and marks), then per pair three tables — results (every metric, gains over scratch
and linear_probe, notes), budget and tuning (epochs, steps, examples seen, optimizer and lr — or a
closed-form fit's solver and chosen C —, precision, the search and its choice, convergence), cost (time, memory, FLOPs, parameters,
Pareto flag) — per-entity-type F1 for NER pairs, the failed runs, and the plots when given.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

from harness.report.aggregate import CI_FALLBACK, GAIN_BASELINES, PARETO_COST, Row
from harness.report.domain import render_domain
from harness.report.format import DASH, bold, ci, gain, human, num, pct, strategy_name, table, value
from harness.report.machines import render_machines
from harness.report.plots import CLOSED_FORM, no_curve_note
from harness.report.stats import Difference

PCT_METRICS = ("accuracy", "macro_f1", "f1", "precision", "recall")

LEGEND = (
    "Metrics in %: mean ± sample std over seeds, [95% CI] from Student's t, clipped to the metric's range. "
    "**Bold**: the best strategy of its pair and every strategy not significantly different from it "
    "(two-sided seed-paired t-test at 5%, i.e. the CI of the per-seed difference contains 0; Welch's t-test "
    "when fewer than two seeds are shared; one seed cannot be told apart). "
    "Gains are seed-paired differences in points with their 95% CI. "
    f"◆: Pareto-optimal on (primary metric, `{PARETO_COST}` per run). Time, GPU-hour and price columns charge "
    "cached work a run reused (a probe's features or its fit, computed by an earlier seed) at what it took to compute. "
    "⚠: failed seeds, counted in `seeds ok` and listed under the table, never dropped. "
    "↗: not converged — the validation metric still rose at the last evaluation by more than the seeds "
    "disagree (and more than 0.1 point); the cell ranks by its budget, not by what the strategy can reach. "
    "≠: the cell's budget (epochs, steps, examples, batch) differs from its pair's reference. "
    "⇥: the chosen value of a searched key is at the edge of its grid (the optimum may lie beyond). "
    "⌂: given unlabeled data of another domain, but scored on its own training domain. "
    "∅: collapsed — on some seeds the model predicts a single label (every word `O`, every image one "
    "class): it never left the majority-class plateau in its budget, and the score says so, not what the "
    "strategy can reach."
)
BOOTSTRAP_LEGEND = (
    "Metrics in %: mean ± sample std over seeds; [95% CI] from a bootstrap over seeds and test examples "
    "(the default, `--ci bootstrap`: Efron & Tibshirani 1993; seeds and the test examples they share resampled, "
    "sentences whole for entity F1; docs/reporting.md) where every seed of the cell kept its predictions, "
    "else from Student's t; clipped to the metric's range. "
    "**Bold**: the best strategy of its pair and every strategy not significantly different from it "
    "(the same bootstrap of the difference, paired by seed and test example, contains 0; else the "
    "two-sided seed-paired t-test at 5%; Welch's t-test when fewer than two seeds are shared; one seed "
    "cannot be told apart). "
)

BOOTSTRAP_GAINS = (
    "Gains are paired differences in points with their 95% CI: the same paired bootstrap over seeds and test "
    "examples where both cells kept their predictions, else seed-paired t; `0 (same predictions)`: the two "
    "cells agree on every test example. "
)


BUDGET_CHECK_LEGEND = (
    " Cells with a budget check (`budget_check: true`; the converged column says 2×): ↗ means instead that "
    "their first seed, trained again at twice the epochs (the chosen point of a search), scored higher on "
    "validation than the noise allows (the paired bootstrap of the two runs' validation predictions lies "
    "above 0), whatever the schedule; the notes name the budget the cell ranks at. ↘: that run scored *lower* "
    "than the noise allows (the interval lies below 0): the cell's score depends on stopping at its budget, "
    "and a longer run should not be expected to keep it."
)


def legend(rows: Sequence[Row]) -> str:
    """The legend; its first sentences say which procedure made the CIs and the bold."""
    text = LEGEND if not any(r.ci == "bootstrap" for r in rows) else BOOTSTRAP_LEGEND + BOOTSTRAP_GAINS \
        + LEGEND[LEGEND.index("◆"):]
    return text + (BUDGET_CHECK_LEGEND if any(r.adequacy is not None for r in rows) else "")


def ci_note(rows: Sequence[Row]) -> list[str]:
    """The header's word on cells that the bootstrap (asked for) could not serve: they fell back to
    Student's t over seeds because their records kept no per-example predictions."""
    fallen = [r for r in rows if r.ci == CI_FALLBACK]
    if not fallen:
        return []
    if len(fallen) == sum(1 for r in rows if r.n_ok):
        return ["> **CIs over seeds only** (Student's t): these records kept no per-example predictions, so the "
                "default bootstrap over seeds and test examples could not be computed; a deterministic cell "
                "(one fit for every seed) shows a zero-width interval that ignores the test set's sampling.", ""]
    names = ", ".join(f"`{r.label}` ({r.group})" for r in fallen)
    return [f"> **{len(fallen)} of {sum(1 for r in rows if r.n_ok)} cells fall back to CIs over seeds only** "
            f"(Student's t; their records kept no usable per-example predictions): {names}. The others use "
            "the bootstrap over seeds and test examples.", ""]


MARKS = (("↗", "not converged"), ("↘", "falls with more budget"), ("≠", "budget differs"), ("⇥", "grid edge"),
         ("⌂", "scored in-domain"), ("∅", "collapsed"))


def seeds(r: Row) -> str:
    return f"{r.n_ok}/{r.n_ok + r.n_failed}" + (" ⚠" if r.n_failed else "")


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


def metric_order(rows: list[Row]) -> list[str]:
    metrics = [m for m in PCT_METRICS if any(m in r.metrics for r in rows)]
    primary = rows[0].primary
    return [primary, *[m for m in metrics if m != primary]] if primary in metrics else metrics


def marks(r: Row) -> str:
    """The row's warning marks (see the legend), as one string."""
    out = ""
    if r.still_rising:
        out += "↗"
    if r.falls_with_budget:
        out += "↘"
    if r.budget_differs:
        out += "≠"
    if r.search and r.search.get("edge"):
        out += "⇥"
    if r.in_domain_da:
        out += "⌂"
    if r.collapsed:
        out += "∅"
    return out


def paired(d: Difference) -> str:
    """A bootstrapped difference in points with its percentile interval."""
    lo, hi = d.interval if d.interval is not None else (math.nan, math.nan)
    return f"{100 * d.mean:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def notes(r: Row) -> str:
    """The marks spelled out, for the per-pair results table."""
    out = []
    c, a = r.convergence, r.adequacy
    if a is not None and a.adequate is False and a.gain is not None:
        out.append(f"↗ budget: {a.factor}× the epochs gains {paired(a.gain)} val points on seed 0's run; the cell "
                   f"ranks at the suite's limit ({a.limit})")
    elif a is not None and a.degrades:
        out.append(f"↘ budget: {a.factor}× the epochs changes val by {paired(a.gain)} points on seed 0's run, a loss; the cell's "
                   f"score depends on stopping at the suite's limit ({a.limit})")
    elif r.still_rising and c is not None:
        out.append(f"↗ still rising (+{100 * c.rise:.2f} at the last eval, seed spread {100 * c.spread:.2f})")
    if r.budget_differs:
        ref = r.budget.get("reference") or {}
        out.append("≠ budget " + ", ".join(f"{k} {r.budget.get(k)} (pair: {ref.get(k)})" for k in r.budget_differs))
    if r.search and r.search.get("edge"):
        chosen = r.search.get("chosen") or {}
        limit = r.search.get("edge_limit")
        out.append("⇥ " + ", ".join(f"{k}={chosen.get(k)} at the grid's edge" for k in r.search["edge"])
                   + (f", extended {limit} step(s) beyond it: the suite's limit (extend_edges: {limit})" if limit else ""))
    if r.in_domain_da:
        d = r.data
        out.append(f"⌂ scored on {d.get('eval_domain') or 'its training domain'}, not on the unlabeled "
                   f"domain ({d.get('unlabeled_domain')})")
    if r.collapsed:
        seeds = ", ".join(str(s) for s in r.collapsed)
        out.append(f"∅ predicts a single label on seed(s) {seeds} of {r.n_ok}: stuck at the majority-class plateau")
    if r.superseded:
        out.append(f"{r.superseded} older final(s) of this cell left out for later ones (the suite was edited)")
    return "; ".join(out)


def budget_cells(r: Row) -> list[str]:
    """epochs, steps, examples seen, optimizer or solver, lr or chosen C, precision: a fit in closed
    form shows its solver and what it chose, not the loop's optimizer and lr it never used."""
    b = r.budget
    if not b:
        return [DASH] * 6
    steps = b.get("steps")
    fit = b.get("closed_form")
    if fit is None and not steps and r.strategy in CLOSED_FORM:  # a record made before budgets named the fit
        fit = {"solver": CLOSED_FORM[r.strategy]}
    if fit is not None:
        # what it chose; a closed-form row's per-C validators (``choices``) are the domain view's table, and
        # the default way of choosing (on val) goes unsaid
        shown = {k: v for k, v in fit.items() if k not in ("solver", "choices") and (k, v) != ("select_by", "oracle")}
        chosen = ", ".join(f"{k} = {value(v)}" for k, v in shown.items()) or "not recorded"
        return ["closed form", DASH, DASH, value(fit.get("solver")), chosen, value(b.get("precision"))]
    seen = b.get("examples_seen")
    return [value(b.get("epochs")) + (f" (max {b['max_steps']} steps)" if b.get("max_steps") else ""),
            f"{steps:.0f}" if isinstance(steps, int | float) else DASH,
            human(seen) if isinstance(seen, int | float) else DASH,
            value(b.get("optimizer")), value(b.get("lr")), value(b.get("precision"))]


def search_cell(r: Row) -> str:
    s = r.search
    if not s:
        return DASH
    space = s.get("space") or {}
    chosen = s.get("chosen") or {}
    parts = []
    for k, values in space.items():
        shown = "[" + ", ".join(value(v) for v in values) + "]" if isinstance(values, list) else str(values)
        extended = (s.get("extended") or {}).get(k)
        if extended:  # values tried past the grid's edge (extend_edges)
            shown += " + beyond [" + ", ".join(value(v) for v in extended) + "]"
        parts.append(f"{k} ∈ {shown} → **{value(chosen.get(k))}**" + (" ⇥" if k in (s.get("edge") or []) else ""))
    n = len(s.get("trials") or [])
    seeds = s.get("selection_seeds") or []
    return "; ".join(parts) + f" ({n} trials on seed {', '.join(map(str, seeds))}, best val {100 * s.get('val', math.nan):.2f})"


def tuning_cell(r: Row) -> str:
    """The wall seconds the cell's trials took."""
    seconds = (r.search or {}).get("tuning_wall_s")
    return DASH if not isinstance(seconds, int | float) else f"{seconds:.1f}"


def convergence_cell(r: Row) -> str:
    if r.collapsed:  # a flat curve at the plateau is not convergence
        return f"**no** ∅ collapsed on {len(r.collapsed)}/{r.n_ok} seeds"
    a = r.adequacy
    if a is not None and a.adequate is not None and a.gain is not None:
        verdict = "**no** ↗" if not a.adequate else "yes ↘" if a.degrades else "yes"
        return verdict + f" ({a.factor}×: {paired(a.gain)} val)"
    c = r.convergence
    if c is None:
        return "solver" if r.budget and not r.budget.get("steps") else DASH
    sign = "+" if c.rise >= 0 else ""
    unmeasured = f"; {a.factor}×: {100 * a.raw_gain:+.2f} val, noise not measured" \
        if a is not None and a.raw_gain is not None else ""
    return ("yes" if c.converged else "**no** ↗") + f" ({sign}{100 * c.rise:.2f} last eval{unmeasured})"


def render_pair(rows: list[Row], assets: Mapping[str, str] | None = None) -> list[str]:
    first = rows[0]
    metrics = metric_order(rows)
    primary = metrics[0] if metrics else None
    out = [f"### {first.group}", "",
           f"Task: `{first.task}` · primary metric: **{primary}** · ranked by its mean", ""]
    if first.variant is not None:
        out += [f"> ⚠ **These records were made on other examples than the rest of `{first.pair}`** (data "
                f"fingerprint `{first.variant}`: another split, subset or evaluation set). They are ranked and "
                "compared only among themselves.", ""]
    domains = sorted({str(r.data["eval_domain"]) for r in rows if r.data.get("eval_domain")})
    if domains:
        out += [f"Evaluated on: {', '.join(domains)} domain.", ""]
    baselines = [b for b in GAIN_BASELINES if any(b in r.gains for r in rows)]
    head = ["rank", "strategy"]
    if primary:
        head += [f"{primary} (± std)", "95% CI"]
    head += [f"{m} (± std)" for m in metrics[1:]]
    head += ["seeds ok"] + [f"gain vs {b} (95% CI)" for b in baselines] + ["notes"]
    body = []
    for r in rows:
        cells = [str(r.rank) if r.rank else DASH, strategy_name(r)]
        if primary:
            cells += [bold(pct(r.metrics.get(primary)), r.tied) + (f" {marks(r)}" if marks(r) else ""),
                      ci(r.metrics.get(primary))]
        cells += [pct(r.metrics.get(m)) for m in metrics[1:]]
        cells.append(seeds(r))
        cells += [gain(r.gains.get(b)) for b in baselines]
        cells.append(notes(r))
        body.append(cells)
    out += table(head, body, left=2)
    if any(r.budget or r.search for r in rows):  # records older than schema 2 have neither
        out += ["", "Budget and tuning (the reference budget of this pair: " + reference(rows) + "):", ""]
        body = [[strategy_name(r), *budget_cells(r), search_cell(r), tuning_cell(r), convergence_cell(r)]
                for r in rows]
        out += table(["strategy", "epochs", "steps", "examples seen", "optimizer / solver", "lr / chosen", "precision",
                      "search (chosen on val)", "tuning s", "converged"], body)
    costs = [c for c in COST_COLUMNS if _measured(rows, c[0])]
    out += ["", "Cost (mean per run):", ""]
    body = [[strategy_name(r), *[fmt(r) for _, _, fmt in costs], params_cell(r), "◆" if r.pareto else ""] for r in rows]
    out += table(["strategy", *[c[1] for c in costs], "trainable / total params", "Pareto"], body)
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
            out.append(f"![{primary} vs {PARETO_COST}, {first.group}]({assets['pareto']})")
        if "curve" in assets:
            out.append(f"![validation {primary} per epoch, {first.group}]({assets['curve']})")
        note = no_curve_note(rows)  # a closed-form fit has no epochs: say so rather than leave it out silently
        if note:
            out += ["", note]
    return out + [""]


def reference(rows: list[Row]) -> str:
    ref = next((r.budget.get("reference") for r in rows if r.budget.get("reference")), None)
    if not ref:
        return "not recorded"
    return ", ".join(f"{k} {value(v)}" for k, v in ref.items() if v is not None)


def render_per_label(rows: list[Row]) -> list[str]:
    """Per-entity-type F1 of token-classification pairs (entity types as columns)."""
    if rows[0].task != "token-classification":
        return []
    types = sorted({t for r in rows for t in r.per_label})
    if not types:
        return []
    body = [[strategy_name(r)] + [pct(r.per_label.get(t), with_std=False) for t in types] for r in rows]
    return ["", "Per-entity-type F1 (%, mean over seeds):", "", *table(["strategy", *types], body)]


def summary_labels(rows: list[Row]) -> list[str]:
    """Strategy labels for the summary table: the gain baselines first, then alphabetical."""
    labels = {r.label for r in rows}
    base = [b for b in GAIN_BASELINES if b in labels]
    return base + sorted(labels - set(base))


def render_summary(by_group: Mapping[str, list[Row]]) -> list[str]:
    """Strategies as rows, pairs as columns: wide catalogues stay readable."""
    rows = [r for group_rows in by_group.values() for r in group_rows]
    groups = list(by_group)
    cells = {(r.group, r.label): r for r in rows}
    strategy_of = {r.label: r.strategy for r in rows}
    body = []
    for label in summary_labels(rows):
        line = [f"`{label}`" if strategy_of[label] == label else f"`{label}` ({strategy_of[label]})"]
        for group in groups:
            r = cells.get((group, label))
            if r is None:
                line.append("")
                continue
            s = r.score
            text = bold(pct(s, with_std=False), r.tied)
            if s.n >= 2:
                text += f" {ci(s)}"
            if marks(r):
                text += f" {marks(r)}"
            if r.n_failed:
                text += f" ⚠ {seeds(r).removesuffix(' ⚠')}"
            line.append(text)
        body.append(line)
    head = ["strategy", *[f"{g} ({by_group[g][0].primary or DASH})" for g in groups]]
    return ["## Summary", "", "Primary metric per strategy and pair, % mean [95% CI]; marks as in the legend.", "",
            *table(head, body), ""]


def render(rows: list[Row], title: str | None = None,
           assets: Mapping[str, Mapping[str, str]] | None = None, sections: Sequence[str] = ()) -> str:
    """The leaderboard of one suite (rows of one suite and smoke flag).

    ``assets`` maps a pair (its :attr:`Row.group`) to relative links of its plots (``pareto``, ``curve``).
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
    trials = sum(len((r.search or {}).get("trials") or []) for r in rows)
    tuned = f" Searches: {trials} trial points, chosen on validation (not in the table)." if trials else ""
    spent = ""
    if rows[0].suite_run_s:
        spent = (f" Run time: {rows[0].suite_run_s / 60:.1f} min summed over the suite's {rows[0].suite_runs} "
                 "computations (trials included, a final that took over a trial's run counted once; a pool or "
                 "a cluster runs them in less wall-clock time).")
    lines += [f"Generated by `harness report` from {n_runs} run records ({n_failed} failed).{tuned}{spent}", ""]
    lines += render_machines(rows)
    lines += ci_note(rows)
    lines += [legend(rows), ""]
    by_group: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_group[r.group].append(r)
    lines += render_summary(by_group)
    lines += render_domain(rows)
    lines += list(sections)  # views made elsewhere (transferability), before the per-pair detail
    lines += ["## Per pair", ""]
    for group, group_rows in by_group.items():
        lines += render_pair(group_rows, (assets or {}).get(group))
    return "\n".join(lines).rstrip() + "\n"
