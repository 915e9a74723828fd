"""The domain-adaptation view of a leaderboard: per shift, source-only, each method, the
target-supervised reference, and the measured gap between the domains. Pure.

A *shift* is one source model and one evaluated domain (a dataset, in one of its domains: the
record's ``evaluated_on``) that some row trains away from (its ``trained_on`` differs). Every row
of the suite with the same source and evaluated domain joins it, whichever pair it sits in: the rows trained on
the other domain without target data (source only), those given the target domain's unlabeled
data (or a few of its labels: supervised DA), and those trained on the evaluated domain itself (the
target-supervised reference, an upper bound, not a method). Gains are paired against the
source-only full fine-tune (by seed and test example when both rows kept predictions:
:func:`harness.report.evidence.row_gain`; else by seed) (or the first source-only row); *gap closed* is the share of the
distance from source-only to the reference that a method covers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from harness.report.aggregate import Row
from harness.report.evidence import row_gain
from harness.report.format import DASH, ci, gain, pct, strategy_name, table
from harness.report.stats import Summary
from harness.search import LABEL_FREE, point_text, preference
from harness.targets.naming import qualified

SOURCE_ONLY, CONTROL, ADAPTED, REFERENCE = "source only", "control", "adapted", "target-supervised reference"
ROLE_ORDER = {SOURCE_ONLY: 0, CONTROL: 1, ADAPTED: 2, REFERENCE: 3}
ADABN = "adabn"


def trained(r: Row) -> str:
    """The domain a row's labels came from, as a dataset (records older than the field: from its parts)."""
    d = r.data
    return str(d.get("trained_on") or qualified(d.get("dataset"), d.get("train_domain")))


def evaluated(r: Row) -> str:
    d = r.data
    return str(d.get("evaluated_on") or qualified(d.get("dataset"), d.get("eval_domain")))


def role(r: Row) -> str:
    if r.data.get("control"):  # AdaBN, a method with its loss weight 0: what a method's gain is measured against
        return CONTROL
    if r.data.get("unlabeled_domain") or r.data.get("target_shots"):
        return ADAPTED
    return REFERENCE if trained(r) == evaluated(r) else SOURCE_ONLY


def with_pair_data(rows: list[Row]) -> list[Row]:
    """Rows whose records predate the ``source``/``dataset``/``trained_on`` fields take them from a
    row of the same pair and data that has them (one pair: one source, one target block)."""
    keys = ("source", "dataset", "trained_on", "evaluated_on")
    known = {(r.suite, r.pair, r.variant): {k: r.data[k] for k in keys if r.data.get(k)}
             for r in rows if r.data.get("dataset")}
    out = []
    for r in rows:
        fill = known.get((r.suite, r.pair, r.variant))
        if fill and not r.data.get("dataset") and r.data.get("eval_domain"):
            mine = qualified(fill["dataset"], r.data.get("train_domain"))
            r = replace(r, data={**r.data, "source": fill.get("source"), "dataset": fill["dataset"],
                                 "trained_on": mine, "evaluated_on": fill.get("evaluated_on")})
        out.append(r)
    return out


def shifts(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    """``(source, evaluated domain)`` → its rows, for the groups some row trains away from, in row order."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in with_pair_data(rows):
        if r.data.get("dataset") and r.data.get("eval_domain"):
            groups[(str(r.data.get("source")), evaluated(r))].append(r)
    return {k: v for k, v in groups.items() if any(trained(r) != evaluated(r) for r in v) and r_primary(v)}


def r_primary(rows: list[Row]) -> bool:
    return len({r.primary for r in rows}) == 1 and rows[0].primary is not None


def baseline(rows: list[Row]) -> Row | None:
    plain = [r for r in rows if role(r) == SOURCE_ONLY and r.n_ok]
    return next((r for r in plain if r.strategy == "full_finetune"), plain[0] if plain else None)


def adabn(rows: list[Row]) -> Row | None:
    """The shift's AdaBN control (source only, scored with target BatchNorm statistics)."""
    return next((r for r in rows if r.strategy == ADABN and r.n_ok), None)


def gap_closed(r: Row, base: Row | None, ref: Row | None) -> str:
    if base is None or ref is None or r is base or r is ref or not r.n_ok:
        return DASH
    span = ref.score.mean - base.score.mean
    if span <= 0:
        return DASH
    return f"{100 * (r.score.mean - base.score.mean) / span:.0f} %"


def trained_on(r: Row) -> str:
    d = r.data
    text = trained(r)
    if d.get("unlabeled_domain"):
        text += f" + unlabeled {d['unlabeled_domain']}"
    if d.get("target_shots"):
        text += f" + {d['target_shots']} labelled/class of {d.get('target_shots_domain') or 'the target domain'}"
    return text


def gap_line(rows: list[Row]) -> str:
    gaps = [g for r in rows if isinstance(g := r.data.get("domain_gap"), dict) and "proxy_a_distance" in g]
    if not gaps:
        return ("Domain gap: not measured (a `linear_probe` row of a pair with `unlabeled:` data measures it "
                "on the source's frozen features).")
    g = gaps[0]
    return (f"Domain gap before adaptation: proxy A-distance **{g['proxy_a_distance']:.2f}** (0: the domains cannot "
            f"be told apart, 2: linearly separable; a domain classifier on the source's frozen features errs "
            f"{100 * g['domain_error']:.1f} % on held-out rows, {g['rows_per_domain']} rows per domain).")




def chosen_by(trials: list[dict], validator: str) -> dict | None:
    """The point a validator would have chosen among a search's trial rows: its best mean score over
    the selection seeds, in the order :func:`harness.search.choose` chooses by
    (:func:`~harness.search.preference`); None when it scored none. The rows keep no cost, so a tie
    goes to the earlier point: where tied points cost differently (a grid over trainable blocks, or
    early stopping that changes the steps), the search gave it to the cheaper one instead."""
    scored = [t for t in trials
              if t.get("status") == "ok" and isinstance((t.get("validators") or {}).get(validator), int | float)]
    return min(scored, key=lambda t: preference(t["validators"][validator], t["index"])) if scored else None


def c_trials(r: Row) -> list[dict]:
    """A closed-form row's C grid as search trials (``budget.closed_form.choices``: every C's
    validators and test score, recorded by the probe and subspace alignment on a pair with
    unlabeled data), so that :func:`chosen_by` reads both alike; [] for any other row."""
    choices = (r.budget.get("closed_form") or {}).get("choices") or []
    return [{"index": i, "point": {"C": c["C"]}, "status": "ok", "validators": c.get("validators"),
             "test": c.get("test")} for i, c in enumerate(choices)]


def selection_table(group: list[Row]) -> list[str]:
    """Per searched row: the test score (selection seeds) of the point each validator would have
    chosen, the oracle's, and the oracle's advantage over the label-free validators' mean."""
    body = []
    for r in sorted(group, key=lambda r: ROLE_ORDER[role(r)]):
        trials = (r.search or {}).get("trials") or c_trials(r)
        if role(r) == REFERENCE or not any(t.get("validators") for t in trials):
            continue
        picks = {v: chosen_by(trials, v) for v in ("oracle", *LABEL_FREE)}
        oracle = picks["oracle"]
        cells, free = [], []
        for v in ("oracle", *LABEL_FREE):
            t = picks[v]
            test = t.get("test") if t else None
            if v != "oracle" and isinstance(test, int | float):
                free.append(test)
            cells.append(DASH if not isinstance(test, int | float) else f"{100 * test:.2f} ({point_text(t['point'], ', ')})")
        advantage = DASH
        if oracle is not None and isinstance(oracle.get("test"), int | float) and free:
            advantage = f"{100 * (oracle['test'] - sum(free) / len(free)):+.2f}"
        body.append([f"`{r.pair}`", strategy_name(r), role(r), *cells, advantage])
    if not body:
        return []
    seeds = sorted({s for r in group for s in (r.search or {}).get("selection_seeds") or []})
    on = (f"mean over the selection seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}; a closed-form "
          "row's one fit serves every seed" if seeds else "a closed-form row's one fit serves every seed")
    return [f"Choosing without target labels: the test score (%, {on}) of the point each validator chooses "
            "among a row's search trials (a closed-form row: among the C of its grid, every one fitted) — `oracle`: the evaluated domain's labelled validation split (how every "
            "row above was chosen); `source_val`: the source domain's validation split; `dev`: importance-weighted "
            "source validation (DEV); `entropy`: confident target predictions; `snd`: soft neighbourhood density "
            "(docs/strategies.md, *Choosing hyperparameters without target labels*). Oracle's advantage: oracle − "
            "the mean of the four label-free choices, in points: what the target labels were worth to the row.", "",
            *table(["pair", "strategy", "role", "oracle", *LABEL_FREE, "oracle's advantage"], body, left=3), ""]


def shared_conditions(group: list[Row]) -> str:
    """What every row of a shift shares (input, budget, selection), read from the records; values
    that differ between rows are listed with the rows that have them."""

    def said(values: dict[str, list[str]], what: str) -> str:
        if len(values) == 1:
            return f"{what} {next(iter(values))}"
        return f"{what} " + "; ".join(f"{v} ({', '.join(rows)})" for v, rows in values.items())

    def collect(fn) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for r in group:
            value = fn(r)
            if value is not None:
                out[value].append(r.label)
        return dict(out)

    trained = [r for r in group if r.budget.get("steps")]  # the closed-form rows train no steps
    parts = []
    size = collect(lambda r: f"{r.data['resolution']} px" if r.data.get("resolution") else
                   f"{r.data['max_length']} tokens" if r.data.get("max_length") else None)
    if size:
        parts.append(said(size, "input"))
    budget = collect(lambda r: f"{r.budget.get('epochs')} epochs × batch {r.budget.get('batch_size')}"
                     + (f", {r.budget['max_train_samples']} training examples" if r.budget.get("max_train_samples")
                        else "") if r in trained else None)
    if budget:
        parts.append(said(budget, "budget (rows that train in the loop)"))
    space = collect(lambda r: ", ".join(f"{k} ∈ {v}" for k, v in (r.search or {}).get("space", {}).items())
                    + f" chosen by {(r.search or {}).get('select_by', 'oracle')}" if r.search else None)
    if space:
        parts.append(said(space, "search"))
    bn = collect(lambda r: r.data.get("bn_statistics"))
    frozen = [r.label for r in group if r.data.get("bn_statistics") == "frozen"]
    if frozen:
        parts.append(f"frozen features ({', '.join(frozen)}): the probe's L-BFGS head on the raw (unstandardised) "
                     "pooled features; subspace_alignment standardises each domain's before its PCA")
    fitted = collect(lambda r: f"one of {len(fit['choices'])} values chosen by {fit.get('select_by', 'oracle')}"
                     if (fit := r.budget.get("closed_form") or {}).get("choices") else None)
    if fitted:
        parts.append(said(fitted, "closed-form C:"))
    refs = [r.label for r in group if role(r) == REFERENCE]
    controls = [r.label for r in group if role(r) == CONTROL]
    plain = [r.label for r in group if role(r) == SOURCE_ONLY]
    parts.append(f"source only: {', '.join(plain) or 'none'}; controls: {', '.join(controls) or 'none'}; "
                 f"references (target labels, an upper bound): {', '.join(refs) or 'none'}")
    if len(bn) > 1:
        parts.append("BatchNorm statistics differ between rows (the BN statistics column)")
    return "Every row here shares: " + "; ".join(parts) + "."


def render_domain(rows: list[Row]) -> list[str]:
    """The section, or nothing when no row trains away from the domain it is scored on."""
    groups = shifts(rows)
    if not groups:
        return []
    out = ["## Domain adaptation", "",
           "Per shift (a source model and the domain it is evaluated on), every row of the suite scored on that "
           "domain: trained on the other domain only (source only), given the target domain's unlabeled data "
           "(adapted), a control (AdaBN: source only scored with BatchNorm statistics re-estimated on the "
           "unlabeled target data; `weight: 0`: a method's pipeline without its loss), or trained on the evaluated "
           "domain's labels (the target-supervised reference: an upper bound, not a method). Gain: paired vs "
           "the source-only full fine-tune (and vs AdaBN, what a method adds beyond target statistics), with its "
           "95% CI (the paired bootstrap over seeds and test examples when both rows kept their predictions, "
           "else the t interval over seeds; `0 (same predictions)`: the two rows agree on every test example). Gap closed: the share of the distance from source only to the reference that a row covers. BN "
           "statistics: the data behind the BatchNorm statistics a row is scored with (`labelled`: its training "
           "batches; `labelled+target`: those and unlabeled target batches in train mode; `target`: re-estimated "
           "on the unlabeled target data; `frozen`: the source model's; `none`: no BatchNorm).", ""]
    searched = any(r.search for group in groups.values() for r in group if role(r) != REFERENCE)
    out[-2] += (" Whatever a row chooses on validation (the probe's C" + ("; the learning rates searched here"
                if searched else "") + ") it chooses, unless its shift's first line says `chosen by` a label-free "
                "validator, on the evaluated domain's validation split: an unsupervised-DA "
                "user has no such labels, so those choices are an oracle and the rows an optimistic bound on what "
                "each gives without them (docs/strategies.md, *Choosing hyperparameters without target labels*).")
    for (source, target), group in groups.items():
        primary = group[0].primary
        base = baseline(group)
        refs = [r for r in group if role(r) == REFERENCE and r.n_ok]
        ref = max(refs, key=lambda r: r.score.mean) if refs else None
        ada = adabn(group)
        body = []
        for r in sorted(group, key=lambda r: ROLE_ORDER[role(r)]):  # stable: suite order within a role
            g: Summary | None = None if base is None or r is base else row_gain(r, base)
            line = [f"`{r.pair}`", strategy_name(r), role(r), trained_on(r),
                    pct(r.score) + (f" {ci(r.score)}" if r.score.n >= 2 else ""), gain(g)]
            if ada is not None:
                line.append(DASH if r is ada or role(r) in (SOURCE_ONLY, REFERENCE)
                            else gain(row_gain(r, ada)))
            body.append([*line, gap_closed(r, base, ref), r.data.get("bn_statistics") or DASH,
                         f"{r.n_ok}/{r.n_ok + r.n_failed}"])
        head = ["pair", "strategy", "role", "trained on", f"{primary} % (± std) [95% CI]",
                f"gain vs {base.label if base else 'source only'}", *([f"gain vs {ada.label}"] if ada else []),
                "gap closed", "BN statistics", "seeds ok"]
        out += [f"### {source}, evaluated on {target}", "", shared_conditions(group), "", gap_line(group), ""]
        out += [*table(head, body, left=4), ""]
        out += selection_table(group)
    return out
