"""``harness report``'s default CIs: a bootstrap from the kept predictions (accuracy per example, entity
F1 per sentence); ``--ci seeds`` the t report as before; cells without predictions fall back, said in the header."""

from __future__ import annotations

import pytest

from harness import api
from harness.records import scan
from harness.report.aggregate import CI_FALLBACK, Row, aggregate
from harness.report.evidence import bootstrap_rows, row_gain, value_of
from harness.report.format import SAME, gain
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


# --- gains: the same paired bootstrap as the CIs and the bold, so that two deterministic cells (one fit
# for every seed) a few test examples apart do not get a zero-width gain ---

def _row(label: str, per_seed: dict[int, dict], primary: str = "accuracy") -> Row:
    from harness.report.stats import summarize

    scores = {s: value_of(v) for s, v in per_seed.items()}
    row = Row("s", "p", label, label, "image-classification", primary, False, n_ok=len(per_seed))
    row.by_seed[primary] = scores
    row.metrics[primary] = summarize(list(scores.values()))
    row.examples = per_seed
    return row


def _deterministic(wrong: set[int], n: int = 359) -> dict[int, dict]:
    one = {f"k{i}": 0.0 if i in wrong else 1.0 for i in range(n)}
    return {s: dict(one) for s in range(3)}


def test_a_gain_between_deterministic_cells_a_few_examples_apart_has_the_test_sets_width():
    from harness.report.stats import paired_gain

    a = _row("a", _deterministic(set(range(100))))
    b = _row("b", _deterministic(set(range(103))))  # 3 of 359 examples more wrong
    t = paired_gain(a.primary_seeds, b.primary_seeds)
    assert t.low == t.high  # the old gain: zero width by t over identical seeds
    g = row_gain(a, b)
    assert g.mean == pytest.approx(3 / 359) and g.interval is not None
    assert g.low <= 0 < g.mean < g.high  # a width, and 3 images are not a significant gain
    assert gain(g).startswith("+0.84 [") and "[+0.84, +0.84]" not in gain(g)
    b.examples = None  # no predictions on one side: the seed-paired t, as before
    assert row_gain(a, b) == t


def test_two_cells_with_the_same_predictions_say_so_instead_of_a_zero_width_gain():
    a, b = _row("a", _deterministic({1, 2})), _row("b", _deterministic({1, 2}))
    assert gain(row_gain(a, b)) == SAME


def test_bootstrap_rows_puts_the_paired_bootstrap_in_the_gain_columns(write_suite, tmp_path):
    results = tmp_path / "results"
    api.run(write_suite(SUITE), "local", results)
    records = scan(results)[0]
    rows = aggregate(records)
    annotate_gains = {r.label: dict(r.gains) for r in rows}
    assert "linear_probe" in annotate_gains["full_finetune"]
    bootstrap_rows(rows, records, results)
    ft = next(r for r in rows if r.label == "full_finetune")
    g = ft.gains["linear_probe"]
    assert g.interval is not None and g.mean == pytest.approx(annotate_gains["full_finetune"]["linear_probe"].mean)


def test_a_cell_that_finds_no_entity_gets_the_binomial_bound_not_a_point(monkeypatch):
    from harness.report import evidence

    gold = 40
    counts = {f"s{i}": [0, 0, 1] for i in range(gold)}  # 40 sentences of one gold entity each; none predicted
    row = _row("mmd", {s: dict(counts) for s in range(3)}, primary="f1")
    row.best = True
    monkeypatch.setattr(evidence, "_cells", lambda rows, records, results: {id(row): row.examples})
    bootstrap_rows([row], [], ".")
    lo, hi = row.score.interval
    recall = 1 - 0.025 ** (1 / gold)  # (1 − R)^40 = 0.025: the largest recall 0 hits of 40 leave at 95%
    assert lo == 0 and hi == pytest.approx(2 * recall / (1 + recall)) and hi > 0
    assert (1 - recall) ** gold == pytest.approx(0.025)


def test_when_the_best_cell_lost_its_predictions_the_others_keep_their_bootstrap_and_no_paired_test(write_suite, tmp_path):
    """Ties with the best need both sides' predictions: a best cell that fell back to the seeds is
    not paired with the others' examples (which would fail); the others keep their bootstrap CIs and
    the seed-paired test against it."""
    results = tmp_path / "results"
    api.run(write_suite(SUITE), "local", results)
    best = next(r for r in aggregate(scan(results)[0]) if r.best)
    for f in (results / "tiny").glob(f"cnn-images.{best.label}.s1-*.preds.npz"):
        f.unlink()
    records = scan(results)[0]
    rows = aggregate(records)
    assert bootstrap_rows(rows, records, results) == 1
    top = next(r for r in rows if r.best)
    other = next(r for r in rows if r is not top)
    assert top.ci == CI_FALLBACK and top.examples is None
    assert other.ci == "bootstrap" and other.examples is not None
    assert other.vs_best is not None and other.vs_best.method != "bootstrap"  # the seeds' test, as aggregate made it
