"""The committed reference report of ``suites/domain.yaml`` is what its committed run records say:
the records and their per-example predictions sit in ``reports/reference/runs/domain/``,
``harness rescore`` recomputes every metric from the predictions without training, and ``harness
report`` renders the committed markdown from the records again."""

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


def test_rescore_recomputes_every_committed_domain_run_from_its_predictions():
    records = [r for r in committed("domain") if r.suite == "domain" and r.status == "ok"]
    out = api.rescore(RUNS, suite="domain")
    assert not out.skipped, out.skipped[:3]
    primary = {(row.run_id, row.metric): row for row in out.rows}
    for r in records:  # every ok run kept its predictions, and they give its primary metric back
        assert r.predictions, r.run_id
        row = primary[(r.run_id, r.primary_metric)]
        assert row.value == pytest.approx(r.metrics[r.primary_metric], abs=1e-9), r.run_id


def test_the_committed_domain_report_renders_from_the_committed_runs(tmp_path):
    committed("domain")
    written = api.report(RUNS, tmp_path / "domain.md", suite="domain", exports=False)[0]
    assert written.markdown.read_text(encoding="utf-8") == \
        (ROOT / "reports" / "reference" / "domain.md").read_text(encoding="utf-8")


def test_no_interval_of_the_committed_domain_report_has_zero_width():
    import re

    text = (ROOT / "reports" / "reference" / "domain.md").read_text(encoding="utf-8")
    intervals = re.findall(r"\[([+-]?\d+\.\d+), ([+-]?\d+\.\d+)\]", text)
    assert len(intervals) > 20  # cells and gains
    assert [i for i in intervals if i[0] == i[1]] == []
