"""`harness report --compare-to`: each cell beside a reference report's, with a verdict (issue 31)."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.records import write_record
from harness.report import reference as ref
from harness.report.aggregate import aggregate
from harness.report.export import write_report
from harness.report.reference import read_reference, reference_file, verdict
from harness.report.stats import Summary, summarize
from tests.factories import make_record

SUITE = "quick"


def records(cells: dict[str, list[float | None]]) -> list:
    """A cell's records, one per seed; None: a failed seed."""
    return [make_record(label, seed, acc, pair="digits", suite=SUITE, status="ok" if acc is not None else "failed")
            for label, accs in cells.items() for seed, acc in enumerate(accs)]


REFERENCE = {
    "scratch": [0.90, 0.92, 0.94],  # mean 92, CI ± 4.97 points
    "linear_probe": [0.9415] * 3,  # closed form: a CI of zero width
    "full_finetune": [0.98, 0.98, 0.98],
    "lora": [0.80, 0.80, 0.80],
    "bitfit": [0.70, 0.70, 0.70],  # the user did not run it
}
MINE = {
    "scratch": [0.95, 0.96, 0.97],  # mean 96: 4 points above, inside the reference's CI
    "linear_probe": [0.9376] * 3,  # 0.39 point below a zero-width CI: within the 1-point floor
    "full_finetune": [0.96, 0.96, 0.96],  # 2 points below a zero-width CI: below
    "lora": [0.85, 0.86, 0.87],  # 6 points above: above
    "adapter": [0.9, 0.9],  # not in the reference
    "dann": [None, None],  # every seed failed here
}


@pytest.fixture
def reference(tmp_path):
    pytest.importorskip("pandas")  # the CSV export
    folder = tmp_path / "reference"
    write_report(aggregate(records(REFERENCE | {"dann": [0.5, 0.5]})), folder / f"{SUITE}.md", plots=False,
                 exports=True)
    return folder


def verdicts(board: str) -> dict[str, str]:
    section = board.split("## Beside the reference")[1].split("\n## ")[0]
    return {line.split("|")[2].strip().strip("`"): line.split("|")[7].strip().strip("*")
            for line in section.splitlines() if line.startswith("| digits")}


def test_report_compare_to_gives_each_cell_its_verdict(tmp_path, reference):
    results = tmp_path / "results"
    for r in records(MINE):
        write_record(results / SUITE, r)
    out = tmp_path / "mine"
    assert main(["report", "--results", str(results), "--reports", str(out), "--no-plots", "--no-export",
                 "--compare-to", str(reference)]) == 0
    board = (out / f"{SUITE}.md").read_text()
    assert verdicts(board) == {"scratch": ref.WITHIN, "linear_probe": ref.WITHIN, "full_finetune": ref.BELOW,
                               "lora": ref.ABOVE, "adapter": ref.MISSING_THERE, "dann": ref.MISSING_HERE,
                               "bitfit": ref.MISSING_HERE}
    assert "| digits | `scratch` | accuracy | 96.00 (3) | 92.00 (3) [87.03, 96.97] | +4.00 | within |" in board
    assert "| digits | `lora` | accuracy | 86.00 (3) | 80.00 (3) [80.00, 80.00] | +6.00 | **above ↑** |" in board
    assert "2 within, 1 above ↑, 1 below ↓, 2 missing here, 1 missing in the reference." in board
    assert f"Reference: `{reference / (SUITE + '.csv')}`" in board
    assert "or 1 point, whichever is larger" in board  # the rule for zero-width intervals, stated
    # the markdown beside the data names the same reference
    assert main(["report", "--results", str(results), "--reports", str(out), "--no-plots", "--no-export",
                 "--compare-to", str(reference / f"{SUITE}.md")]) == 0
    assert verdicts((out / f"{SUITE}.md").read_text())["lora"] == ref.ABOVE


def test_a_parquet_reference_reads_as_the_csv(reference):
    pytest.importorskip("pyarrow")
    from_csv = read_reference(reference / f"{SUITE}.csv", SUITE)
    from_parquet = read_reference(reference / f"{SUITE}.parquet", SUITE)
    assert [(c.key, c.score.n, round(c.score.mean, 6)) for c in from_csv] == \
        [(c.key, c.score.n, round(c.score.mean, 6)) for c in from_parquet]
    assert len(from_csv) == 6 and read_reference(reference / f"{SUITE}.csv", "another") == []


def test_the_verdict_rule_at_its_edges():
    point = Summary(3, 0.94, 0.0, 0.0)  # deterministic: the tolerance is the margin
    assert verdict(summarize([0.94 + ref.TOLERANCE * 0.99]), point) == ref.WITHIN
    assert verdict(summarize([0.94 + ref.TOLERANCE * 1.01]), point) == ref.ABOVE
    assert verdict(summarize([0.94 - ref.TOLERANCE * 1.01]), point) == ref.BELOW
    wide = summarize([0.90, 0.92, 0.94])  # CI half-width ≈ 0.0497: wider than the tolerance
    assert verdict(summarize([0.92 + 0.049]), wide) == ref.WITHIN and verdict(summarize([0.92 - 0.051]), wide) == ref.BELOW
    one_seed = Summary(1, 0.94, 0.0, float("nan"))  # no CI: the tolerance only
    assert verdict(summarize([0.955]), one_seed) == ref.ABOVE
    assert verdict(None, point) == ref.MISSING_HERE and verdict(summarize([0.9]), None) == ref.MISSING_THERE


def test_a_reference_that_is_not_there_is_a_one_line_error(tmp_path):
    with pytest.raises(HarnessError, match="no reference data"):
        reference_file(tmp_path / "nowhere", SUITE)


def test_a_smoke_run_beside_full_results_says_its_verdicts_are_the_budgets(tmp_path, reference):
    results = tmp_path / "results"
    for r in records(MINE):
        r.smoke = True
        write_record(results / f"{SUITE}-smoke", r)
    out = tmp_path / "mine"
    assert main(["report", "--results", str(results), "--reports", str(out), "--no-plots", "--no-export",
                 "--compare-to", str(reference)]) == 0
    board = (out / f"{SUITE}-smoke.md").read_text()
    section = board.split("## Beside the reference")[1]
    assert "**A smoke run beside full results**" in section.split("| pair |")[0]
    assert verdicts(board)["lora"] == ref.ABOVE  # the table itself is unchanged
