"""``harness report``'s default CIs: a bootstrap from the kept predictions (accuracy per example, entity
F1 per sentence); ``--ci seeds`` the t report as before; cells without predictions fall back, said in the header."""

from __future__ import annotations

from harness import api
from harness.records import scan
from harness.report.aggregate import CI_FALLBACK, aggregate
from harness.report.evidence import bootstrap_rows
from harness.report.markdown import LEGEND
from tests.conftest import TINY_SUITE

SUITE = TINY_SUITE.replace("  - scratch\n", "")  # a closed-form probe (one fit for every seed) and a fine-tune


def test_bootstrap_gives_a_deterministic_cell_a_width_and_is_the_reports_default(write_suite, tmp_path):
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
    # through the API: the default is the bootstrap, and the legend names it; ci="seeds" (or "t") the t report
    b_md = api.report(results, tmp_path / "b.md", plots=False, exports=False)[0].markdown.read_text()
    for name in ("seeds", "t"):
        t_md = api.report(results, tmp_path / "t.md", plots=False, exports=False, ci=name)[0].markdown.read_text()
        assert LEGEND in t_md and "bootstrap" not in t_md
    assert "Efron & Tibshirani 1993" in b_md and LEGEND not in b_md and "fall back" not in b_md


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
    assert tuned.ci == CI_FALLBACK and tuned.score == before["full_finetune"]
    # the report's header names the cell that fell back to the seeds
    md = api.report(results, tmp_path / "r.md", plots=False, exports=False)[0].markdown.read_text()
    header = md[:md.index("## Summary")]
    assert "1 of 2 cells fall back to CIs over seeds only" in header and "`full_finetune` (cnn-images)" in header


def test_records_without_predictions_make_a_seeds_report_that_says_so(write_suite, tmp_path):
    results = tmp_path / "results"
    api.run(write_suite(SUITE), "local", results)
    for f in (results / "tiny").glob("*.preds.npz"):
        f.unlink()
    md = api.report(results, tmp_path / "r.md", plots=False, exports=False)[0].markdown.read_text()
    header = md[:md.index("## Summary")]
    assert "CIs over seeds only" in header and LEGEND in md
    seeds_md = api.report(results, tmp_path / "s.md", plots=False, exports=False, ci="seeds")[0].markdown.read_text()
    assert "CIs over seeds only" not in seeds_md  # asked for: nothing fell back


NER_SUITE = SUITE.replace("suite: tiny", "suite: ner").replace("cnn-images", "bert-ner").replace(
    "test/tiny_cnn", "test/tiny_bert").replace("test/tiny_images, task: image-classification",
                                               "test/tiny_ner, task: token-classification")


def test_entity_f1_cells_get_a_bootstrap_over_sentences(write_suite, tmp_path):
    results = tmp_path / "results"
    assert all(r.status == "ok" for r in api.run(write_suite(NER_SUITE), "local", results).done)
    records = scan(results)[0]
    rows = aggregate(records)
    before = {r.label: r.score for r in rows}
    assert {r.primary for r in rows} == {"f1"}
    assert bootstrap_rows(rows, records, results) == 2  # before, F1 cells kept the t interval: 0
    assert {r.ci for r in rows} == {"bootstrap"}
    for r in rows:  # the same mean, a bootstrap interval about it
        assert r.score.mean == before[r.label].mean and r.score.interval is not None
        assert r.score.low <= r.score.mean <= r.score.high
    probe = next(r for r in rows if r.label == "linear_probe")
    assert 0 < probe.score.mean < 1  # one fit for every seed: zero width by t, the sentences' width here
    assert before["linear_probe"].low == before["linear_probe"].high and probe.score.high > probe.score.low
    other = next(r for r in rows if not r.best)
    assert other.vs_best is not None and other.vs_best.method == "bootstrap"
