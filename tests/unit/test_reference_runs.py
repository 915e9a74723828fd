"""The committed reference reports (``suites/domain.yaml``, ``quickstart.yaml``, ``strategies.yaml``,
``zoo.yaml``) are what their committed run records say: the records and their per-example predictions sit in
``reports/reference/runs/<suite>/``, ``harness rescore`` recomputes every metric from the
predictions without training, and ``harness report`` renders the committed markdown from the
records again."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import api
from harness.records import scan

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "reports" / "reference" / "runs"


def committed(suite: str):
    if not (RUNS / suite).is_dir():
        pytest.fail(f"{RUNS / suite} holds no committed runs")
    return scan(RUNS)[0]


SUITES = ["domain", "quickstart", "strategies", "zoo"]


@pytest.mark.parametrize("suite", SUITES)
def test_rescore_recomputes_every_committed_run_from_its_predictions(suite):
    records = [r for r in committed(suite) if r.suite == suite and r.status == "ok"]
    assert records
    out = api.rescore(RUNS, suite=suite)
    assert not out.skipped, out.skipped[:3]
    primary = {(row.run_id, row.metric): row for row in out.rows}
    for r in records:  # every ok run kept its predictions, and they give its primary metric back
        assert r.predictions, r.run_id
        row = primary[(r.run_id, r.primary_metric)]
        assert row.value == pytest.approx(r.metrics[r.primary_metric], abs=1e-9), r.run_id


@pytest.mark.parametrize("suite", SUITES)
def test_the_committed_report_renders_from_the_committed_runs(tmp_path, suite):
    committed(suite)
    written = api.report(RUNS, tmp_path / f"{suite}.md", suite=suite, exports=False)[0]
    assert written.markdown.read_text(encoding="utf-8") == \
        (ROOT / "reports" / "reference" / f"{suite}.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("suite", SUITES)
def test_no_interval_of_a_report_made_from_committed_runs_has_zero_width(suite):
    import re

    text = (ROOT / "reports" / "reference" / f"{suite}.md").read_text(encoding="utf-8")
    intervals = re.findall(r"\[([+-]?\d+\.\d+), ([+-]?\d+\.\d+)\]", text)
    assert len(intervals) > 10  # cells and gains
    assert [i for i in intervals if i[0] == i[1]] == []


def test_rescore_recomputes_the_committed_nightly_baseline_from_its_predictions():
    """``harness baseline`` keeps the predictions beside the baseline's records: the committed
    baseline can be rescored (another metric, another seqeval mode) without training."""
    baselines = ROOT / "results" / "baselines"
    records = [r for r in scan(baselines)[0] if r.suite == "nightly" and r.status == "ok"]
    assert len(records) == 48 and all(r.predictions for r in records)
    out = api.rescore(baselines, suite="nightly")
    assert not out.skipped, out.skipped[:3]
    got = {(row.run_id, row.metric): row.value for row in out.rows}
    for r in records:
        assert got[(r.run_id, r.primary_metric)] == pytest.approx(r.metrics[r.primary_metric], abs=1e-9), r.run_id


@pytest.mark.parametrize("suite", SUITES)
def test_the_committed_trials_give_every_final_its_recorded_choice(suite):
    """Each final's recorded search summary (its chosen point, validation score, edge and trial
    table) is what :func:`harness.search.choose` makes of the committed trials again: an altered
    trial record, or a final no trial supports, fails here."""
    from harness.executors.base import Graph
    from harness.plan import expand
    from harness.search import choose
    from harness.suite import load_suite

    records = {r.run_id: r for r in committed(suite) if r.suite == suite}
    plan = expand(load_suite(ROOT / "suites" / f"{suite}.yaml"))
    graph = Graph(plan, records)
    searched = [s for s in plan if s.search is not None and s.role != "trial"]
    assert searched
    for spec in searched:
        assert spec.run_id in records, f"{spec.run_id}: the committed runs are not this suite's plan"
        recorded = records[spec.run_id].search
        got = choose(spec.search, graph.trials_of(spec), records)
        assert got.point == recorded["chosen"], spec.run_id
        assert got.summary == recorded, spec.run_id


@pytest.mark.parametrize("suite", ["strategies", "domain"])
def test_no_ranked_cell_of_a_committed_report_is_inadequate_short_of_its_suites_limit(suite):
    """Issue 27's bar for the two suites that check budgets: a cell marked ↗ (twice the epochs
    gains more than the noise) or ⇥ (chosen at a grid's edge) says which limit of the suite it
    ranks at, and no cell falls back to the last-evaluation rule."""
    import re

    text = (ROOT / "reports" / "reference" / f"{suite}.md").read_text(encoding="utf-8")
    budgets = re.findall(r"↗ budget[^|]*", text)
    edges = re.findall(r"⇥ \w+=[^;|]*", text)
    assert budgets  # the suite's budget checks rendered
    assert "↗ still rising" not in text
    for note in budgets:
        assert "the cell ranks at the suite's limit (epochs" in note, note
    for note in edges:
        assert "beyond it: the suite's limit (extend_edges:" in note, note
