"""Every strategy tuned on validation: the ``search:`` block, the plan graph of trials and finals,
choosing on val (never test), reusing the trial a final is, resuming, and what the records say."""

from __future__ import annotations

import json

import pytest

from harness import cli
from harness.errors import ConfigError
from harness.executors.base import run_plan, select
from harness.plan import SEARCHED, expand
from harness.records import RunRecord
from harness.run.execute import ExecOptions
from harness.search import Search, choose
from harness.suite import load_suite
from tests.factories import make_record

SUITE = """\
suite: tuned
seeds: [0, 1]
defaults: {{epochs: 2, batch_size: 16, lr: 1e-2, max_train_samples: 48, max_eval_samples: 24{defaults}}}
pairs:
  - id: cnn
    source: {{model: test/tiny_cnn}}
    target: {{dataset: test/tiny_images, task: image-classification}}
{pair}strategies:
{strategies}"""


def suite(write_suite, strategies: str, defaults: str = "", pair: str = "", name: str = "suite.yaml"):
    return load_suite(write_suite(SUITE.format(strategies=strategies, defaults=defaults, pair=pair), name))


def errors(write_suite, strategies: str, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        suite(write_suite, strategies, **kw)
    return str(e.value)


def test_a_grid_makes_trials_on_the_selection_seed_and_finals_that_wait_for_them(write_suite):
    runs = expand(suite(write_suite, "  - full_finetune: {search: {lr: [1e-3, 1e-2, 1e-1]}}\n"))
    trials = [r for r in runs if r.role == "trial"]
    finals = [r for r in runs if r.role == "final"]
    assert [(t.trial_index, t.point, t.seed) for t in trials] == [(0, {"lr": 1e-3}, 0), (1, {"lr": 1e-2}, 0),
                                                                   (2, {"lr": 1e-1}, 0)]
    assert [t.train["lr"] for t in trials] == [1e-3, 1e-2, 1e-1]
    assert [f.seed for f in finals] == [0, 1] and all(f.train["lr"] == SEARCHED and not f.resolved for f in finals)
    assert all(set(f.depends_on) == {t.run_id for t in trials} for f in finals)
    assert [r.role for r in runs] == ["trial"] * 3 + ["final"] * 2  # dependencies first
    assert trials[0].run_id.startswith("cnn.full_finetune.t0.s0-")


def test_search_layers_resolve_by_key_most_specific_wins(write_suite):
    """A search in defaults applies to every cell; a fixed value in a more specific layer leaves it;
    a search in a more specific layer replaces it; keys a strategy does not take are dropped."""
    text = ("  - scratch\n  - full_finetune: {lr: 3e-3}\n  - lora: {search: {lr: [1e-2, 1e-1], r: [2, 4]}}\n"
            "  - linear_probe\n")
    spec = suite(write_suite, text, defaults=", search: {lr: [1e-3, 1e-2], r: [8, 16]}",
                 pair="    overrides: {scratch: {search: {lr: [5e-2, 5e-1, 5.0]}}}\n")
    finals = {r.label: r for r in expand(spec) if r.role == "final" and r.seed == 0}
    assert finals["scratch"].search.space == {"lr": [5e-2, 5e-1, 5.0]}  # the override's grid
    assert finals["full_finetune"].search is None and finals["full_finetune"].train["lr"] == 3e-3
    assert finals["lora"].search.space == {"lr": [1e-2, 1e-1], "r": [2, 4]}
    # the L-BFGS probe has no learning rate: a search over it would be four identical runs
    assert finals["linear_probe"].search is None


def test_plan_prints_trials_and_finals(write_suite, capsys):
    path = write_suite(SUITE.format(strategies="  - scratch\n  - full_finetune\n",
                                    defaults=", search: {lr: [1e-3, 1e-2, 1e-1]}", pair=""))
    assert cli.main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 finals" in out and "6 search trials" in out
    assert "final: best of 3 (lr ∈ [0.001, 0.01, 0.1]) on val" in out and "trial #2: lr=0.1" in out
    assert cli.main(["plan", str(path), "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)
    assert {n["role"] for n in nodes} == {"trial", "final"}
    assert all(n["depends_on"] for n in nodes if n["role"] == "final")


@pytest.mark.parametrize(("block", "message"), [
    ("search: {lr: [-1, 1e-2]}", "search.lr[0]: Input should be greater than 0 (got -1)"),
    ("search: {lrr: [1e-2]}", "unknown key 'lrr'. Did you mean: lr?"),
    ("search: {lr: 1e-2}", "takes a non-empty list of candidate values"),
    ("search: {lr: {log_uniform: [1e-4, 1e-1]}}", "a distribution needs method: random or tpe"),
    ("search: {lr: [1e-2], method: gird}", "unknown search method 'gird'. Did you mean: grid?"),
    ("search: {r: [0, 4]}", "search.r[0]: Input should be greater than or equal to 1"),
    ("search: {lr: [1e-2, 1e-2]}", "candidate values repeat"),
    ("search: {lr: [1e-2], selection_seeds: [0, 0]}", "distinct non-negative integers"),
])
def test_bad_searches_fail_at_validate_with_file_line_and_key(write_suite, block, message):
    msg = errors(write_suite, f"  - lora: {{{block}}}\n")
    assert message in msg and "suite.yaml:" in msg and "strategies[0].lora.search" in msg


def test_a_sequential_search_takes_one_selection_seed(write_suite):
    msg = errors(write_suite, "  - lora: {search: {method: tpe, lr: {uniform: [1e-3, 1e-2]}, selection_seeds: [0, 1]}}\n")
    assert "give it one selection seed (got [0, 1])" in msg and "strategies[0].lora" in msg


def test_search_points_are_checked_like_the_cells_own_values(write_suite):
    msg = errors(write_suite, "  - partial_finetune: {search: {trainable_blocks: [1, 9]}}\n")
    assert "trainable_blocks=9 but test/tiny_cnn has only 3 blocks (search point {'trainable_blocks': 9})" in msg


def record(spec, val: float, test: float, status: str = "ok", trainable: int = 10, point=None) -> RunRecord:
    return make_record(spec.label, spec.seed, run_id=spec.run_id, pair=spec.pair, strategy=spec.strategy,
                       status=status, error=None, role="trial", task=None,
                       metrics={"accuracy": test, "val": {"accuracy": val}}, cost={"trainable_params": trainable},
                       search={"point": point or spec.point}, at="t")


def test_choice_is_made_on_validation_never_on_test(write_suite):
    runs = expand(suite(write_suite, "  - lora: {search: {lr: [1e-3, 1e-2, 1e-1]}}\n"))
    trials = [r for r in runs if r.role == "trial"]
    final = next(r for r in runs if r.role == "final")
    # the best test score belongs to lr=1e-3, the best validation score to lr=1e-1
    recs = {t.run_id: record(t, val, test) for t, (val, test) in zip(trials, [(0.5, 0.99), (0.6, 0.5), (0.7, 0.4)],
                                                                      strict=True)}
    choice = choose(final.search, trials, recs)
    assert choice.point == {"lr": 1e-1} and choice.score == 0.7
    assert choice.summary["edge"] == ["lr"]  # the best is the grid's largest value: the optimum may lie beyond
    # a tie goes to the cheaper point; a failed trial never wins
    recs = {t.run_id: record(t, 0.6, 0.5, trainable=tr) for t, tr in zip(trials, [30, 20, 20], strict=True)}
    recs[trials[1].run_id] = record(trials[1], 0.9, 0.9, status="failed")
    choice = choose(final.search, trials, recs)
    assert choice.point == {"lr": 1e-1} and choice.summary["edge"] == ["lr"]
    assert [t["status"] for t in choice.summary["trials"]] == ["ok", "failed", "ok"]
    with pytest.raises(ValueError, match="no point of the search finished"):
        choose(final.search, trials, {t.run_id: record(t, 0.5, 0.5, status="failed") for t in trials})


def test_edge_is_only_marked_for_numeric_grids_of_three_or_more():
    s = Search(space={"lr": [1e-3, 1e-2, 1e-1], "r": [2, 4], "optimizer": ["adamw", "sgd", "adamw2"]})
    assert s.at_edge({"lr": 1e-2, "r": 4, "optimizer": "sgd"}) == []
    assert s.at_edge({"lr": 1e-3, "r": 2, "optimizer": "adamw"}) == ["lr"]


def test_a_searched_suite_runs_reuses_the_chosen_trial_and_resumes(write_suite, tmp_path):
    spec = suite(write_suite, "  - full_finetune: {search: {lr: [1e-3, 1e-1]}}\n")
    runs = expand(spec)
    options = ExecOptions(cache_dir=tmp_path / "cache")
    out = run_plan(runs, tmp_path / "r", options)
    by_id = {r.run_id: r for r in out.done}
    assert all(r.status == "ok" for r in out.done) and len(out.done) == len(runs) == 4
    trials = [r for r in out.done if r.role == "trial"]
    finals = sorted((r for r in out.done if r.role == "final"), key=lambda r: r.seed)
    best = max(trials, key=lambda r: r.metrics["val"]["accuracy"])
    for f in finals:
        assert f.search["chosen"] == best.search["point"] and f.config["train"]["lr"] == best.search["point"]["lr"]
        assert [t["run_ids"][0] for t in f.search["trials"]] == [t.run_id for t in trials]
        assert f.budget["lr"] == best.search["point"]["lr"]
    # seed 0 is the selection seed: its final is the chosen trial, not a second training
    assert finals[0].config["notes"]["reused_trial"] == best.run_id
    assert finals[0].metrics == best.metrics and finals[0].curve == best.curve
    assert "reused_trial" not in finals[1].config["notes"]
    assert by_id[finals[1].run_id].config["seed"] == 1
    again = run_plan(runs, tmp_path / "r", options)
    assert not again.done and sorted(again.skipped) == sorted(r.run_id for r in runs)


def test_selecting_a_final_runs_its_trials_first(write_suite, tmp_path):
    runs = expand(suite(write_suite, "  - scratch\n  - full_finetune: {search: {lr: [1e-3, 1e-1]}}\n"))
    chosen = select(runs, "cnn/full_finetune")
    assert {r.role for r in chosen} == {"trial", "final"} and {r.label for r in chosen} == {"full_finetune"}
    seed1 = select(runs, "*full_finetune.s1-*")
    assert [r.role for r in seed1] == ["trial", "trial", "final"]


def test_changing_the_grid_changes_the_finals_identity(write_suite):
    a = expand(suite(write_suite, "  - scratch: {search: {lr: [1e-3, 1e-1]}}\n", name="a.yaml"))
    b = expand(suite(write_suite, "  - scratch: {search: {lr: [1e-3, 1e-2]}}\n", name="b.yaml"))
    fa, fb = ([r.run_id for r in x if r.role == "final"] for x in (a, b))
    ta, tb = ([r.run_id for r in x if r.role == "trial"] for x in (a, b))
    assert not set(fa) & set(fb)
    assert ta[0] == tb[0] and ta[1] != tb[1]  # the trial both grids share is one run


def test_random_search_draws_fixed_points_inside_the_bounds(write_suite):
    text = "  - lora: {search: {method: random, trials: 5, lr: {log_uniform: [1e-4, 1e-1]}, r: [2, 4, 8]}}\n"
    runs = expand(suite(write_suite, text))
    points = [r.point for r in runs if r.role == "trial"]
    assert len(points) == 5 and all(1e-4 <= p["lr"] <= 1e-1 and p["r"] in (2, 4, 8) for p in points)
    assert points == [r.point for r in expand(suite(write_suite, text, name="again.yaml")) if r.role == "trial"]


def test_tpe_draws_each_point_from_the_trials_before_it_and_replays_the_same_points(write_suite, tmp_path):
    pytest.importorskip("optuna")
    text = "  - full_finetune: {search: {method: tpe, trials: 4, lr: {log_uniform: [1e-3, 1e-1]}}}\n"
    runs = expand(suite(write_suite, text))
    trials = [r for r in runs if r.role == "trial"]
    assert len(trials) == 4 and all(not t.resolved for t in trials)
    assert all(set(trials[k].depends_on) == {t.run_id for t in trials[:k]} for k in range(4))  # sequential
    points = []
    for attempt in ("a", "b"):
        done = run_plan(runs, tmp_path / attempt, ExecOptions(cache_dir=tmp_path / attempt / "cache")).done
        assert all(r.status == "ok" for r in done), [r.error for r in done]
        points.append([r.search["point"]["lr"] for r in done if r.role == "trial"])
        final = next(r for r in done if r.role == "final")
        assert final.search["chosen"]["lr"] in points[-1]
    assert points[0] == points[1] and all(1e-3 <= p <= 1e-1 for p in points[0])
    assert len(set(points[0])) == 4


def test_a_changed_grid_reruns_only_what_it_has_not_computed(write_suite, tmp_path):
    """Widening a grid keeps every run it already has: the shared trials by run_id, and a final
    whose chosen point was computed before (under the old grid's final) by what it computes."""
    options = ExecOptions(cache_dir=tmp_path / "cache")
    old = expand(suite(write_suite, "  - full_finetune: {search: {lr: [1e-3, 1e-1]}}\n", name="a.yaml"))
    first = {r.run_id: r for r in run_plan(old, tmp_path / "r", options).done}
    old_final = next(r for r in first.values() if r.role == "final" and r.seed == 1)
    # a third point that cannot win (a tie goes to the earlier point): the choice stays
    new = expand(suite(write_suite, "  - full_finetune: {search: {lr: [1e-3, 1e-1, 1e-9]}}\n", name="b.yaml"))
    second = run_plan(new, tmp_path / "r", options)
    assert len(second.skipped) == 2  # the two shared trials, by run_id
    trained = [r for r in second.done if not {"reused_run", "reused_trial"} & set(r.config["notes"])]
    assert [(r.role, r.search["point"]) for r in trained] == [("trial", {"lr": 1e-9})]  # only the new point
    final = next(r for r in second.done if r.role == "final" and r.seed == 1)
    assert final.run_id != old_final.run_id and final.config["notes"]["reused_run"] == old_final.run_id
    assert final.recorded_at is not None and final.written_at > old_final.written_at  # it supersedes the old one
    assert final.metrics == old_final.metrics and final.search["chosen"] == old_final.search["chosen"]
    assert len(final.search["trials"]) == 3


def test_a_failed_trial_is_not_rerun_while_its_finals_stand_and_retry_failed_chooses_again(write_suite, tmp_path):
    from harness.executors.base import to_run

    runs = expand(suite(write_suite, "  - full_finetune: {search: {lr: [1e-3, 1e-1]}}\n"))
    trials = [r for r in runs if r.role == "trial"]
    finals = [r for r in runs if r.role == "final"]

    def rec(spec, status):
        return record(spec, 0.5, 0.5, status=status)

    existing = {t.run_id: rec(t, "ok") for t in trials}
    existing[trials[1].run_id] = rec(trials[1], "failed")  # a point that diverged
    existing.update({f.run_id: rec(f, "ok") for f in finals})
    assert to_run(runs, existing, retry_failed=False) == []  # a scored failure of the search, not work
    again = to_run(runs, existing, retry_failed=True)
    assert [r.run_id for r in again] == [trials[1].run_id, *(f.run_id for f in finals)]  # then choose again
    del existing[trials[0].run_id]  # a trial that never ran (the run was killed) comes along
    assert {r.run_id for r in to_run(runs, existing, retry_failed=True)} == {r.run_id for r in runs}


def test_a_smoke_run_drops_searches_over_its_own_caps(write_suite):
    text = "  - full_finetune: {search: {lr: [1e-3, 1e-1], max_steps: [100, 200]}}\n"
    smoke = expand(suite(write_suite, text), smoke=True)
    final = next(r for r in smoke if r.role == "final")
    assert final.search.space == {"lr": [1e-3, 1e-1]} and final.train["max_steps"] == 3


def test_a_distribution_under_another_layers_grid_method_is_a_validate_error(write_suite):
    """defaults search draws r from a distribution (method random); a strategy's own search says
    method grid: the merged search would grid over a distribution, which validate names."""
    text = "  - lora: {search: {method: grid, lr: [1e-3]}}\n"
    msg = errors(write_suite, text, defaults=", search: {method: random, r: {int: [2, 8]}}")
    assert "search: r is a distribution, but the cell's search method is grid" in msg


def test_a_teacher_its_pair_leaves_out_is_an_aux_run(write_suite):
    text = "  - full_finetune\n  - distill: {teacher: full_finetune}\n"
    runs = expand(suite(write_suite, text, pair="    strategies: [distill]\n"))
    assert {(r.label, r.role) for r in runs} == {("distill", "final"), ("full_finetune", "aux")}


def test_a_tie_goes_to_fewer_trainable_parameters_before_fewer_flops_then_to_the_earlier_point():
    from harness.search import preference

    assert min(preference(0.5, 0, 20, 100), preference(0.5, 1, 10, 200)) == preference(0.5, 1, 10, 200)
    assert min(preference(0.5, 0, 10, 200), preference(0.5, 1, 10, 100)) == preference(0.5, 1, 10, 100)
    assert min(preference(0.5, 1, 10, 100), preference(0.5, 0, 10, 100)) == preference(0.5, 0, 10, 100)
    assert min(preference(0.4, 0, 1, 1), preference(0.5, 1, 99, 99)) == preference(0.5, 1, 99, 99)
