"""``harness report --ci bootstrap``: CIs and ties from the kept predictions; the default report unchanged."""

from __future__ import annotations

from harness import api
from harness.records import scan
from harness.report.aggregate import aggregate
from harness.report.evidence import bootstrap_rows
from harness.report.markdown import LEGEND
from tests.conftest import TINY_SUITE

SUITE = TINY_SUITE.replace("  - scratch\n", "")  # a closed-form probe (one fit for every seed) and a fine-tune


def test_bootstrap_gives_a_deterministic_cell_a_width_and_the_default_report_is_unchanged(write_suite, tmp_path):
    results = tmp_path / "results"
    assert all(r.status == "ok" for r in api.run(write_suite(SUITE), "local", results).done)
    records = scan(results)[0]
    rows = aggregate(records)
    probe = next(r for r in rows if r.label == "linear_probe")
    assert probe.score.std == 0 and probe.score.low == probe.score.high  # one fit for every seed: zero width by t
    assert bootstrap_rows(rows, records, results) == 2
    assert {r.ci for r in rows} == {"bootstrap"}
    assert probe.score.low < probe.score.mean <= probe.score.high and probe.score.high > probe.score.low
    assert probe.score.mean == next(r for r in aggregate(records) if r.label == "linear_probe").score.mean
    other = next(r for r in rows if r is not probe)
    assert other.vs_best is None or other.vs_best.method == "bootstrap"
    # the option, through the API: the legend names the procedure; the default writes the t report
    t_md = api.report(results, tmp_path / "t.md", plots=False, exports=False)[0].markdown.read_text()
    b_md = api.report(results, tmp_path / "b.md", plots=False, exports=False, ci="bootstrap")[0].markdown.read_text()
    assert LEGEND in t_md and "bootstrap" not in t_md
    assert "Efron & Tibshirani 1993" in b_md and LEGEND not in b_md


def test_a_cell_without_predictions_keeps_the_t_interval(write_suite, tmp_path):
    results = tmp_path / "results"
    api.run(write_suite(SUITE), "local", results)
    for f in (results / "tiny").glob("cnn-images.full_finetune.s1-*.preds.npz"):
        f.unlink()  # one seed's file lost: the cell cannot be bootstrapped whole
    records = scan(results)[0]
    rows = aggregate(records)
    before = {r.label: r.score for r in rows}
    assert bootstrap_rows(rows, records, results) == 1
    tuned = next(r for r in rows if r.label == "full_finetune")
    assert tuned.ci == "t" and tuned.score == before["full_finetune"]
