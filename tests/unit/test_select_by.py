"""``select_by:`` in a search: a final chosen by a validator that reads no target label (issue 28)."""

from __future__ import annotations

import pytest

from harness.plan import expand
from harness.run import validators
from harness.search import SELECT_BY, choose
from harness.suite import load_suite
from tests.factories import make_record
from tests.unit.test_search import SUITE, errors

GRID = "search: {lr: [1e-3, 1e-2, 1e-1]"
DA_SUITE = SUITE.replace("task: image-classification}}", "task: image-classification, unlabeled: shifted}}")


def suite(write_suite, strategies: str, name: str = "suite.yaml"):
    """The search tests' suite, its pair given unlabeled target data (what the validators read)."""
    return load_suite(write_suite(DA_SUITE.format(strategies=strategies, defaults="", pair=""), name))


def test_the_validators_a_search_can_select_by_are_the_ones_runs_record():
    assert set(SELECT_BY) == set(validators.VALIDATORS)
    assert DA_SUITE != SUITE  # the pair of these tests has unlabeled data


def test_select_by_is_checked_at_validate_with_the_nearest_name(write_suite):
    msg = errors(write_suite, f"  - lora: {{{GRID}, select_by: entropi}}}}\n")
    assert "unknown validator 'entropi'. Did you mean: entropy?" in msg and "strategies[0].lora.search.select_by" in msg


def test_select_by_changes_the_finals_identity_and_shares_the_trials(write_suite):
    plain = expand(suite(write_suite, f"  - lora: {{{GRID}}}}}\n", name="a.yaml"))
    oracle = expand(suite(write_suite, f"  - lora: {{{GRID}, select_by: oracle}}}}\n", name="b.yaml"))
    dev = expand(suite(write_suite, f"  - lora: {{{GRID}, select_by: dev}}}}\n", name="c.yaml"))
    ids = [[(r.role, r.run_id) for r in runs] for runs in (plain, oracle, dev)]
    assert ids[0] == ids[1]  # the default, written or not: the same plan
    trials = [[rid for role, rid in x if role == "trial"] for x in ids]
    finals = [[rid for role, rid in x if role == "final"] for x in ids]
    assert trials[0] == trials[2] and not set(finals[0]) & set(finals[2])
    final = next(r for r in dev if r.role == "final")
    assert final.search.select_by == "dev" and final.config()["search"]["select_by"] == "dev"
    assert "select_by" not in next(r for r in plain if r.role == "final").config()["search"]


def trial_record(spec, val: float, test: float, scores: dict):
    return make_record(spec.label, spec.seed, run_id=spec.run_id, pair=spec.pair, strategy=spec.strategy,
                       error=None, role="trial", task=None, cost={"trainable_params": 10},
                       metrics={"accuracy": test, "val": {"accuracy": val},
                                "validators": {**scores, "oracle": val}},
                       search={"point": spec.point}, at="t")


def test_a_validator_chooses_its_own_best_point_and_the_summary_keeps_every_validators_view(write_suite):
    runs = expand(suite(write_suite, f"  - lora: {{{GRID}, select_by: entropy}}}}\n"))
    trials = [r for r in runs if r.role == "trial"]
    final = next(r for r in runs if r.role == "final")
    # val prefers lr=1e-1 (0.7); entropy prefers lr=1e-2 (−0.2); dev prefers lr=1e-3
    rows = [(0.5, 0.80, {"entropy": -0.9, "dev": -0.1}), (0.6, 0.65, {"entropy": -0.2, "dev": -0.5}),
            (0.7, 0.40, {"entropy": -0.5, "dev": -0.9})]
    recs = {t.run_id: trial_record(t, *row) for t, row in zip(trials, rows, strict=True)}
    choice = choose(final.search, trials, recs)
    assert choice.point == {"lr": 1e-2} and choice.score == pytest.approx(-0.2)
    assert choice.summary["val"] == pytest.approx(0.6) and choice.summary["select_by"] == "entropy"
    by_point = {t["index"]: t for t in choice.summary["trials"]}
    assert by_point[0]["validators"]["dev"] == pytest.approx(-0.1) and by_point[2]["test"] == pytest.approx(0.40)
    # the default chooses on val, as before
    oracle = choose(expand(suite(write_suite, f"  - lora: {{{GRID}}}}}\n", name="o.yaml"))[-1].search, trials, recs)
    assert oracle.point == {"lr": 1e-1} and "select_by" not in oracle.summary


def test_a_trial_without_the_validator_cannot_be_chosen_by_it(write_suite):
    runs = expand(suite(write_suite, f"  - lora: {{{GRID}, select_by: dev}}}}\n"))
    trials = [r for r in runs if r.role == "trial"]
    final = next(r for r in runs if r.role == "final")
    recs = {t.run_id: trial_record(t, 0.5, 0.5, {"entropy": -0.3}) for t in trials}
    with pytest.raises(ValueError, match="no trial recorded the validator 'dev'"):
        choose(final.search, trials, recs)


def test_select_by_a_validator_on_a_pair_without_unlabeled_data_fails_at_validate(write_suite):
    msg = errors(write_suite, f"  - lora: {{{GRID}, select_by: snd}}}}\n")
    assert "pair 'cnn': search: select_by: snd reads the unlabeled target data the pair does not have" in msg


def test_the_reports_view_of_each_validators_choice_is_the_searchs_choice_ties_included(write_suite):
    """The domain report's table (``report.domain.chosen_by``) says which point each validator would
    have chosen; it must be the point ``search.choose`` chooses when the search selects by it,
    a tie (two points with the same score) included: both go to the earlier point."""
    from harness.report.domain import chosen_by

    rows = [(0.6, 0.80, {"entropy": -0.5, "dev": -0.3}), (0.6, 0.65, {"entropy": -0.2, "dev": -0.3}),
            (0.5, 0.40, {"entropy": -0.2, "dev": -0.9})]
    for validator, expected in (("oracle", 0), ("entropy", 1), ("dev", 0)):
        extra = f", select_by: {validator}" if validator != "oracle" else ""
        runs = expand(suite(write_suite, f"  - lora: {{{GRID}{extra}}}}}\n", name=f"{validator}.yaml"))
        trials = [r for r in runs if r.role == "trial"]
        recs = {t.run_id: trial_record(t, *row) for t, row in zip(trials, rows, strict=True)}
        choice = choose(next(r for r in runs if r.role == "final").search, trials, recs)
        assert choice.index == expected, validator
        assert chosen_by(choice.summary["trials"], validator)["index"] == expected, validator
