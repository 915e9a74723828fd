"""`harness rank` and the report's transferability view: scores from the probe's own feature cache,
written where the record scanner does not look, and checked against the measured results."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.records import scan
from harness.report.transferability import SCORES_FILE, SourceScores, agreement, read, render_section, write

SUITE = """\
suite: zoo-test
seeds: [0]
defaults: {epochs: 1, batch_size: 16, max_train_samples: 64, max_eval_samples: 32, device: cpu}
pairs:
  - id: trained
    source: {model: test/tiny_cnn}
    target: &t {dataset: test/tiny_images, task: image-classification}
  - id: random
    source: {model: test/tiny_cnn, pretrained: false}
    target: *t
strategies: [linear_probe]
"""


def test_agreement_is_weighted_tau_and_pearson_and_undefined_where_it_must_be():
    assert agreement([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx((1.0, 1.0))
    tau, r = agreement([1, 2, 3, 4], [40, 30, 20, 10])
    assert tau == pytest.approx(-1.0) and r == pytest.approx(-1.0)
    # the top of the ranking weighs most: the same single swap costs more at the top than at the bottom
    top, _ = agreement([4, 3, 2, 1], [3, 4, 2, 1])
    bottom, _ = agreement([4, 3, 2, 1], [4, 3, 1, 2])
    assert top < bottom < 1.0
    assert agreement([1, 2], [1, 2]) == (None, None)  # two sources: no ranking to check
    assert agreement([1, 1, 1], [1, 2, 3]) == (None, None)  # a constant score ranks nothing


def test_rank_scores_every_source_from_the_probes_feature_cache(write_suite, tmp_path, capsys):
    suite = write_suite(SUITE)
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert main(["rank", str(suite), "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test/tiny_images" in out and "trained" in out and "random" in out and "logme" in out
    scores = read(results / "zoo-test")
    assert [s.pair for s in scores] == ["trained", "random"]
    for s in scores:
        assert set(s.scores) == {"logme", "h_score", "gbc"}  # no source head: LEEP, NCE say why not
        assert "classifier head" in s.skipped["leep"] and 0 < s.n <= 64  # the training split, limited
    assert scores[0].scores != scores[1].scores  # a random source is not the trained one
    # the records scanner never reads the scores file as a record
    assert scan(results) == ([], [])
    # the probe then reads the features rank extracted: one cache, keyed the same way
    assert main(["run", str(suite), "--results", str(results), "--cache-dir", str(cache), "--no-progress"]) == 0
    records = [json.loads(p.read_text()) for p in (results / "zoo-test").glob("*.json")]
    assert [r["config"]["notes"]["feature_cache_hit"] for r in records] == [True, True]
    # and the report sets the scores beside what the probe measured
    reports = tmp_path / "reports"
    assert main(["report", "--results", str(results), "--reports", str(reports), "--no-plots", "--no-export"]) == 0
    board = (reports / "zoo-test.md").read_text()
    assert "## Transferability" in board and "| `trained` |" in board and "τw vs probe" in board


def test_the_section_sets_each_score_beside_the_results_and_their_agreement(tmp_path):
    class Score:
        def __init__(self, mean):
            self.n, self.mean = 3, mean

    class Row:
        def __init__(self, pair, strategy, mean):
            self.pair, self.strategy, self.primary, self.score = pair, strategy, "accuracy", Score(mean)

    target = {"dataset": "sklearn/digits", "task": "image-classification"}
    scores = [SourceScores(p, {}, target, 100, 8, 10, {"logme": v, "gbc": -v}) for p, v in
              (("a", 3.0), ("b", 2.0), ("c", 1.0))]
    rows = [Row(p, s, m) for p, m in (("a", 0.9), ("b", 0.8), ("c", 0.7)) for s in ("linear_probe", "full_finetune")]
    text = "\n".join(render_section(rows, scores))
    assert "| `a` | 3.0000 | -3.0000 | 90.00 | 90.00 |" in text
    assert "| logme | +1.000 | +1.000 | 3 | +1.000 | +1.000 | 3 |" in text
    assert "| gbc | -1.000 | -1.000 | 3 | -1.000 | -1.000 | 3 |" in text
    assert "LogME ≈ 0.51" in text  # the published reference beside ours
    path = write(scores, tmp_path / "s", "s")
    assert path == tmp_path / "s" / SCORES_FILE and read(tmp_path / "s") == scores
    path.write_text("{not json")
    assert read(tmp_path / "s") is None  # a damaged file is no scores, not a crash of the report
