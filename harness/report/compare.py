"""The regression gate: new results against a committed baseline, per (pair, strategy, metric). Pure.

Baseline and new runs of a seed share the split, the subsample and the initial draws, so the
gate compares them **paired by seed**: with d_s = new_s − base_s over the seeds both have (≥ 2),
a metric regresses when mean(d) < −max(tolerance, t₀.₉₇₅(n−1) · sd(d)/√n) — a drop significant in
a two-sided paired t-test at 5 % and at least ``tolerance`` — and improves symmetrically. That
threshold is the smallest change the comparison can detect, printed per cell. A seed's luck
cancels in d, so a noisy cell (± 6 points over seeds) still shows a 2-point drop that every seed
shares. With fewer than two shared seeds the gate falls back to ``max(tolerance, k · σ_baseline)``
on the means. A significant improvement passes with a warning that asks for review and a
re-baseline (a change nobody explained is not silently accepted). A baseline cell that vanished, or a
strategy that now fails seeds it did not fail before, is a regression too. Cost is a separate
gate: a strategy whose mean ``cost_key`` grew by more than ``max_slowdown`` (a fraction).

Exact mode: a run of the results whose baseline record has the same run_id and was made in the
same environment — the same package versions, Python, CPU model, torch threads, device and
determinism flags, on the CPU or with deterministic algorithms on — must reproduce it to the last
bit; any metric that differs at all is reported with its run_id and fails the gate, whichever way
it moved (a change nobody explained is for review, then a re-baseline). Runs made elsewhere are
judged by the statistical gate only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.errors import HarnessError, unknown_message
from harness.records import RunRecord
from harness.report.aggregate import COST_KEYS, SCALAR_METRICS, Row, aggregate
from harness.report.export import scan_results
from harness.report.stats import Summary, t975

Status = Literal["ok", "improved", "regression", "missing", "new", "failed seeds"]
Method = Literal["paired", "k·σ", ""]
REGRESSING: frozenset[str] = frozenset({"regression", "missing", "failed seeds"})


class CompareInputError(HarnessError):
    """The baseline or the results cannot be compared (bad input, exit 2; 1 means 'regressed')."""

    exit_code = 2


@dataclass(frozen=True)
class GateOptions:
    tolerance: float = 0.01  # absolute, in the metric's units: 0.01 = 1 point of accuracy
    k: float = 2.0  # baseline standard deviations a drop must exceed
    max_slowdown: float | None = 0.2  # fraction; None: no cost gate
    cost_key: str = "wall_s"
    metrics: tuple[str, ...] = SCALAR_METRICS


@dataclass(frozen=True)
class Change:
    pair: str
    label: str
    metric: str
    base: Summary | None
    new: Summary | None
    threshold: float  # the smallest change that counts (a drop: regression; a rise: improved)
    status: Status
    base_failed: int = 0
    new_failed: int = 0
    method: Method = ""  # paired by seed, or the k·σ fallback
    paired: float | None = None  # mean of the per-seed differences, when paired
    seeds: int = 0  # seeds both sides have

    @property
    def delta(self) -> float:
        if self.paired is not None:
            return self.paired
        if self.base is None or self.new is None or not self.base.n or not self.new.n:
            return math.nan
        return self.new.mean - self.base.mean


@dataclass(frozen=True)
class ExactDiff:
    """A metric of one run that its baseline run, made in the same environment, did not give."""

    run_id: str
    pair: str
    label: str
    seed: int
    metric: str
    base: float | None
    new: float | None


@dataclass
class Exact:
    """Exact mode's outcome: runs checked bit for bit, runs left to the statistical gate."""

    checked: int = 0  # run_ids in both, made in the same environment
    other_environment: int = 0  # run_ids in both, made elsewhere (or with no environment to tell)
    diffs: list[ExactDiff] = field(default_factory=list)


@dataclass
class Comparison:
    changes: list[Change] = field(default_factory=list)
    slowdowns: list[Change] = field(default_factory=list)  # cost_key rows; status regression = too slow
    options: GateOptions = field(default_factory=GateOptions)
    exact: Exact | None = None  # None: exact mode off

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.status in REGRESSING]

    @property
    def improvements(self) -> list[Change]:
        """Significant rises: passed, with a warning asking for review and a re-baseline."""
        return [c for c in self.changes if c.status == "improved"]

    @property
    def exact_diffs(self) -> list[ExactDiff]:
        return self.exact.diffs if self.exact else []

    @property
    def too_slow(self) -> list[Change]:
        return [c for c in self.slowdowns if c.status == "regression"]


def compare_rows(baseline: list[Row], new: list[Row], options: GateOptions | None = None) -> Comparison:
    """Every (pair, label, metric) of the baseline (and of the new rows) with its verdict."""
    opts = options or GateOptions()
    # a data variant (another fingerprint of the pair) is a cell of its own, never compared with another
    base_by = {(r.suite, r.smoke, r.group, r.label): r for r in baseline}
    new_by = {(r.suite, r.smoke, r.group, r.label): r for r in new}
    out = Comparison(options=opts)
    for key in sorted(set(base_by) | set(new_by)):
        b, n = base_by.get(key), new_by.get(key)
        pair, label = key[2], key[3]
        if b is not None and n is not None and n.n_failed > b.n_failed:
            out.changes.append(Change(pair, label, "seeds", None, None, 0.0, "failed seeds", b.n_failed, n.n_failed))
        for metric in opts.metrics:
            bs = b.metrics.get(metric) if b else None
            ns = n.metrics.get(metric) if n else None
            if bs is None and ns is None:
                continue
            fb, fn = (b.n_failed if b else 0), (n.n_failed if n else 0)
            if bs is None:
                out.changes.append(Change(pair, label, metric, None, ns, math.nan, "new", fb, fn))
                continue
            threshold, method, paired, shared = gate_threshold(b.by_seed.get(metric, {}) if b else {},
                                                               n.by_seed.get(metric, {}) if n else {}, bs, opts)
            change = paired if paired is not None else (ns.mean - bs.mean if ns is not None and ns.n else math.nan)
            if ns is None or not ns.n:
                status: Status = "missing"
            elif change < -threshold:
                status = "regression"
            elif change > threshold:
                status = "improved"
            else:
                status = "ok"
            out.changes.append(Change(pair, label, metric, bs, ns, threshold, status, fb, fn, method, paired, shared))
        if opts.max_slowdown is not None and b is not None and n is not None:
            bc, nc = b.cost.get(opts.cost_key), n.cost.get(opts.cost_key)
            if bc is not None and nc is not None and bc.n and nc.n:
                limit = bc.mean * (1 + opts.max_slowdown)
                verdict: Status = "regression" if nc.mean > limit else "ok"
                out.slowdowns.append(Change(pair, label, opts.cost_key, bc, nc, limit, verdict))
    return out


ENV_KEYS = ("packages", "python", "cpu_model", "torch_threads", "device", "device_name", "cuda", "cudnn")


def environment(rec: RunRecord, capability: bool = True) -> str | None:
    """What decides a run's bits besides its config: None when the record cannot tell (made before
    records carried the CPU model) or when its device does not promise the same bits (CUDA without
    deterministic algorithms). With ``capability``, the CPU's vector instruction set too, when the
    record carries it (records made before 2026-12-04 do not: compare those without it)."""
    env = rec.env or {}
    determinism = ((rec.config or {}).get("notes") or {}).get("determinism") or {}
    if not env.get("cpu_model") or not env.get("packages"):
        return None
    if env.get("device", "cpu") != "cpu" and not determinism.get("algorithms"):
        return None
    keys = ENV_KEYS + (("cpu_capability",) if capability and "cpu_capability" in env else ())
    return json.dumps({k: env.get(k) for k in keys} | {"determinism": determinism}, sort_keys=True, default=str)


def same_environment(a: RunRecord, b: RunRecord) -> bool:
    """Whether ``a`` and ``b`` were made where the same config gives the same bits (the instruction
    set is compared when both records carry it)."""
    both = "cpu_capability" in (a.env or {}) and "cpu_capability" in (b.env or {})
    env = environment(a, both)
    return env is not None and env == environment(b, both)


def exact_check(baseline: list[RunRecord], new: list[RunRecord], metrics: Iterable[str]) -> Exact:
    """Every ok run of ``new`` with an ok baseline run of the same run_id and environment,
    compared metric by metric for equality (NaN equals NaN)."""
    base = {r.run_id: r for r in baseline if r.status == "ok"}
    out = Exact()
    for n in sorted((r for r in new if r.status == "ok" and r.run_id in base), key=lambda r: r.run_id):
        b = base[n.run_id]
        if not same_environment(b, n):
            out.other_environment += 1
            continue
        out.checked += 1
        for m in metrics:
            bv, nv = b.metrics.get(m), n.metrics.get(m)
            same = bv == nv or (isinstance(bv, float) and isinstance(nv, float) and math.isnan(bv) and math.isnan(nv))
            if not same:
                out.diffs.append(ExactDiff(n.run_id, n.pair, n.label, n.seed, m, bv, nv))
    return out


def gate_threshold(base: dict[int, float], new: dict[int, float], base_summary: Summary, opts: GateOptions
                   ) -> tuple[float, Method, float | None, int]:
    """The smallest change the gate calls, how it was found, the paired mean difference (None when
    unpaired) and the number of shared seeds."""
    shared = sorted(set(base) & set(new))
    if len(shared) >= 2:
        d = [new[s] - base[s] for s in shared]
        n = len(d)
        mean = sum(d) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        return max(opts.tolerance, t975(n - 1) * sd / math.sqrt(n)), "paired", mean, n
    return max(opts.tolerance, opts.k * base_summary.std), "k·σ", None, len(shared)


def load_records(path: str | Path, what: str, suites: Iterable[str] | None = None) -> list[RunRecord]:
    """The records under ``path`` (restricted to ``suites`` when given)."""
    root = Path(path)
    if not root.is_dir():
        raise CompareInputError(f"{what} {root}: not a directory of run records")
    # whole records: a gate passes nothing it would not resume from (a results root's
    # baselines/ folder is not new results)
    records, corrupt = scan_results(root, RunRecord)
    if corrupt:
        raise CompareInputError(f"{what} {root}: corrupt record(s): {', '.join(str(p) for p in corrupt[:3])}")
    if suites is not None:
        wanted = set(suites)
        records = [r for r in records if r.suite in wanted]
    if not records:
        only = f" of suite(s) {', '.join(sorted(suites))}" if suites is not None else ""
        raise CompareInputError(f"{what} {root}: no run records{only}")
    return records


def compare_dirs(baseline: str | Path, results: str | Path, options: GateOptions | None = None,
                 suite: str | None = None, exact: bool = True) -> Comparison:
    """Compare the records under ``results`` with those under ``baseline`` (same suite(s)); with
    ``exact``, runs made in the baseline's environment are also checked bit for bit."""
    opts = options or GateOptions()
    if opts.max_slowdown is not None and opts.cost_key not in COST_KEYS:
        raise CompareInputError(unknown_message("cost key", opts.cost_key, COST_KEYS))
    base_records = load_records(baseline, "baseline", [suite] if suite else None)
    suites = sorted({r.suite for r in base_records})
    smoke = {r.smoke for r in base_records}
    new_records = [r for r in load_records(results, "results", suites) if r.smoke in smoke]
    if not new_records:
        raise CompareInputError(f"results {results}: no records with the baseline's smoke flag")
    out = compare_rows(aggregate(base_records), aggregate(new_records), opts)
    if exact:
        out.exact = exact_check(base_records, new_records, opts.metrics)
    return out


def _pct(s: Summary | None) -> str:
    if s is None or not s.n:
        return "–"
    return f"{100 * s.mean:.2f} ± {100 * s.std:.2f} (n={s.n})"


def _secs(s: Summary | None) -> str:
    return "–" if s is None or not s.n else f"{s.mean:.2f} (n={s.n})"


def _text_table(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(head), "  ".join("-" * w for w in widths), *(line(row) for row in body)]


def metric_rows(cmp: Comparison) -> list[list[str]]:
    body = []
    for c in cmp.changes:
        if c.metric == "seeds":
            body.append([c.pair, c.label, "failed seeds", str(c.base_failed), str(c.new_failed), "", "", "",
                         c.status.upper()])
            continue
        delta = "–" if math.isnan(c.delta) else f"{100 * c.delta:+.2f}"
        thr = "–" if math.isnan(c.threshold) else f"±{100 * c.threshold:.2f}"
        test = f"paired, {c.seeds} seeds" if c.method == "paired" else (c.method or "–")
        status = c.status.upper() if c.status in REGRESSING else ("IMPROVED: review" if c.status == "improved"
                                                                  else c.status)
        body.append([c.pair, c.label, c.metric, _pct(c.base), _pct(c.new), delta, thr, test, status])
    return body


def cost_rows(cmp: Comparison) -> list[list[str]]:
    body = []
    for c in cmp.slowdowns:
        ratio = c.new.mean / c.base.mean - 1 if c.base and c.new and c.base.mean else math.nan
        body.append([c.pair, c.label, c.metric, _secs(c.base), _secs(c.new),
                     "–" if math.isnan(ratio) else f"{100 * ratio:+.1f}%",
                     f"+{100 * (cmp.options.max_slowdown or 0):.0f}%", "TOO SLOW" if c.status == "regression" else "ok"])
    return body


METRIC_HEAD = ["pair", "strategy", "metric", "baseline % (± std)", "new % (± std)", "change (pts)",
               "detectable (pts)", "test", "status"]
COST_HEAD = ["pair", "strategy", "cost", "baseline", "new", "change", "allowed", "status"]


def render_text(cmp: Comparison, cost_gate: str = "fail") -> str:
    """A fixed-width table for terminals and CI logs, then a one-line verdict."""
    o = cmp.options
    lines = [f"Quality gate, paired by seed: regression (improvement) when the mean per-seed change is below "
             f"(above) -(+)max(tolerance={o.tolerance:g}, t_0.975 x sd/sqrt(n)): significant at 5% and beyond the "
             f"tolerance; with fewer than 2 shared seeds, max(tolerance, k={o.k:g} x baseline std)", ""]
    lines += _text_table(METRIC_HEAD, metric_rows(cmp)) if cmp.changes else ["(nothing to compare)"]
    if cmp.slowdowns and cost_gate != "off":
        lines += ["", f"Cost gate ({cost_gate}): mean {o.cost_key} more than {100 * (o.max_slowdown or 0):.0f}% "
                      "above the baseline", ""]
        lines += _text_table(COST_HEAD, cost_rows(cmp))
    lines += exact_lines(cmp)
    lines += ["", verdict(cmp, cost_gate)]
    return "\n".join(lines) + "\n"


def exact_lines(cmp: Comparison) -> list[str]:
    """Exact mode's part of the report: what was checked bit for bit, and every difference."""
    e = cmp.exact
    if e is None:
        return []
    lines = ["", f"Exact mode: {e.checked} run(s) made in the baseline's environment checked bit for bit; "
                 f"{e.other_environment} made elsewhere (or recorded before records carried the CPU model) "
                 "left to the statistical gate"]
    if e.diffs:
        lines += ["", *_text_table(["run_id", "metric", "baseline", "new"],
                                   [[d.run_id, d.metric, repr(d.base), repr(d.new)] for d in e.diffs])]
    return lines


def render_markdown(cmp: Comparison, cost_gate: str = "fail") -> str:
    """The same tables as GitHub markdown (for a CI artifact or a PR comment)."""
    def md(head: list[str], body: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
                *("| " + " | ".join(c or " " for c in row) + " |" for row in body)]

    o = cmp.options
    lines = ["# Regression check", "",
             f"Paired by seed: a change counts when the mean per-seed change exceeds max({o.tolerance:g}, "
             f"t₀.₉₇₅·sd/√n) (significant at 5 % and beyond the tolerance); fewer than 2 shared seeds: "
             f"max({o.tolerance:g}, {o.k:g}·σ_baseline). *Detectable*: that threshold, per cell.", ""]
    lines += md(METRIC_HEAD, metric_rows(cmp))
    if cmp.slowdowns and cost_gate != "off":
        lines += ["", f"## Cost ({cost_gate}): `{o.cost_key}` more than {100 * (o.max_slowdown or 0):.0f}% slower", ""]
        lines += md(COST_HEAD, cost_rows(cmp))
    lines += [line if not line.startswith("Exact") else f"**{line}**" for line in exact_lines(cmp)]
    lines += ["", f"**{verdict(cmp, cost_gate)}**"]
    return "\n".join(lines) + "\n"


def verdict(cmp: Comparison, cost_gate: str = "fail") -> str:
    reg, slow = len(cmp.regressions), len(cmp.too_slow) if cost_gate != "off" else 0
    parts = [f"{reg} regression(s) in {len(cmp.changes)} comparison(s)"]
    if cmp.exact is not None:
        parts.append(f"{len(cmp.exact_diffs)} metric(s) not reproduced bit for bit in {cmp.exact.checked} run(s) "
                     "of the same environment")
    if cost_gate != "off" and cmp.slowdowns:
        parts.append(f"{slow} too slow of {len(cmp.slowdowns)}" + (" (warning only)" if cost_gate == "warn" else ""))
    if cmp.improvements:
        parts.append(f"WARNING: {len(cmp.improvements)} significant improvement(s) nobody explained: review them, "
                     "then re-baseline (docs/reporting.md)")
    failed = reg > 0 or bool(cmp.exact_diffs) or (cost_gate == "fail" and slow > 0)
    return ("FAIL: " if failed else "PASS: ") + "; ".join(parts)


def exit_code(cmp: Comparison, cost_gate: str = "fail") -> int:
    """1 when a metric regressed (or, with ``cost_gate='fail'``, a strategy got too slow), else 0."""
    return 1 if cmp.regressions or cmp.exact_diffs or (cost_gate == "fail" and cmp.too_slow) else 0

