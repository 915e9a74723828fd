"""`harness report` outputs: CSV and Parquet of the aggregated frame, the PNG plots and their links."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from harness.cli import main
from harness.records import write_record
from harness.report.aggregate import aggregate
from harness.report.export import flat, frame
from harness.report.plots import curve_plot, pareto_plot
from tests.unit.test_report_markdown_golden import full_records, records

PNG = b"\x89PNG\r\n\x1a\n"


def test_flat_row_columns_and_missing_values():
    rows = {(r.pair, r.label): r for r in aggregate(records())}
    ft = flat(rows[("cnn-digits", "full_finetune")])
    assert ft["accuracy_mean"] == pytest.approx(0.955) and ft["accuracy_n"] == 2 and ft["n_failed"] == 1
    assert ft["gain_scratch_mean"] == pytest.approx(0.245)
    assert (ft["gain_scratch_low"], ft["gain_scratch_high"]) == pytest.approx((0.18147, 0.30853), abs=1e-5)
    assert ft["rank"] == 1 and ft["best"] and ft["tied_with_best"]
    assert math.isnan(ft["f1_mean"]) and ft["f1_n"] == 0  # missing is NaN, never 0
    assert math.isnan(ft["cost_energy_j_mean"])
    ner = flat(rows[("bert-ner", "full_finetune")])
    assert math.isnan(ner["gain_scratch_mean"]) and ner["gain_scratch_n"] == 0


def test_csv_and_parquet_round_trip(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from harness.report.export import write_csv, write_parquet

    rows = aggregate(full_records())
    df = frame(rows)
    assert len(df) == 8 and df["rank"].dtype == "Int64"
    csv = pd.read_csv(write_csv(rows, tmp_path / "x.csv"))
    parquet = pd.read_parquet(write_parquet(rows, tmp_path / "x.parquet"))
    for other in (csv, parquet):
        assert list(other.columns) == list(df.columns)
        assert other["label"].tolist() == df["label"].tolist()
        assert other["accuracy_mean"].tolist() == pytest.approx(df["accuracy_mean"].tolist(), nan_ok=True)
        assert other["gain_linear_probe_high"].tolist() == pytest.approx(df["gain_linear_probe_high"].tolist(), nan_ok=True)


def test_plots_are_pngs_and_deterministic(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [r for r in aggregate(full_records()) if r.pair == "effnet-digits"]
    a, b = pareto_plot(rows, tmp_path / "a.png"), pareto_plot(rows, tmp_path / "b.png")
    assert a.read_bytes().startswith(PNG) and a.read_bytes() == b.read_bytes()
    assert curve_plot(rows, tmp_path / "c.png").read_bytes().startswith(PNG)
    # nothing to plot: no file, no link
    bare = [r for r in aggregate(records()) if r.pair == "cnn-digits"]
    assert pareto_plot(bare, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    assert curve_plot(bare, tmp_path / "none.png") is None


def test_report_command_writes_everything_linked_relatively(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pytest.importorskip("pyarrow")
    results = tmp_path / "results"
    for r in full_records():
        write_record(results / "golden", r)
    reports = tmp_path / "reports"
    assert main(["report", "--results", str(results), "--reports", str(reports)]) == 0
    captured = capsys.readouterr()
    md = reports / "golden.md"
    assert captured.out.strip() == str(md)  # stdout: the markdown path only
    assert (reports / "golden.csv").exists() and (reports / "golden.parquet").exists()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md.read_text())
    assert sorted(links) == ["golden/effnet-digits-curve.png", "golden/effnet-digits-pareto.png",
                             "golden/minilm-wnut16-pareto.png"]  # the NER fixture has no curve
    for link in links:
        assert (reports / link).read_bytes().startswith(PNG)


def test_report_no_plots_no_export(tmp_path, capsys):
    results = tmp_path / "results"
    for r in records():
        write_record(results / "golden", r)
    out = tmp_path / "board.md"
    assert main(["report", "--results", str(results), "--out", str(out), "--no-plots", "--no-export"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.md", "results"]
    assert "![" not in out.read_text()


def test_unchanged_plots_are_not_redrawn(tmp_path):
    pytest.importorskip("matplotlib")
    from harness.report.plots import plot_pairs

    recs = full_records()
    links = plot_pairs(aggregate(recs), tmp_path, "x")
    pareto = tmp_path / "effnet-digits-pareto.png"
    pareto.write_bytes(PNG + b"sentinel")  # a redraw would overwrite this
    assert plot_pairs(aggregate(recs), tmp_path, "x") == links
    assert pareto.read_bytes() == PNG + b"sentinel"
    # one more record in the pair changes its data: redrawn; the other pair's plots are kept
    (tmp_path / "minilm-wnut16-pareto.png").write_bytes(PNG + b"kept")
    extra = [r for r in recs if r.pair == "effnet-digits" and r.seed == 0][0]
    recs.append(extra.model_copy(update={"run_id": "extra", "seed": 9, "metrics": {"accuracy": 0.1}}))
    plot_pairs(aggregate(recs), tmp_path, "x")
    assert pareto.read_bytes() != PNG + b"sentinel" and pareto.read_bytes().startswith(PNG)
    assert (tmp_path / "minilm-wnut16-pareto.png").read_bytes() == PNG + b"kept"
    pareto.unlink()  # a deleted file is drawn again
    plot_pairs(aggregate(recs), tmp_path, "x")
    assert pareto.exists()


FORKED = """
import json, sys
from concurrent import futures
from pathlib import Path
from harness.report import plots
from harness.report.aggregate import aggregate
from tests.unit.test_report_markdown_golden import full_records

pools = []
class Spy(futures.ProcessPoolExecutor):
    def __init__(self, *a, **kw):
        pools.append(a[0])
        super().__init__(*a, **kw)
futures.ProcessPoolExecutor = Spy
links = plots.plot_pairs(aggregate(full_records()), Path(sys.argv[1]), "x", workers=2)
print(json.dumps({"links": links, "pools": pools, "matplotlib_in_parent": "matplotlib.figure" in sys.modules}))
"""


def test_plots_drawn_in_worker_processes_are_the_same_bytes(tmp_path):
    """A fresh process (as ``harness report`` is) draws on two forked workers; the PNGs are byte
    for byte those drawn in-process."""
    pytest.importorskip("matplotlib")
    import json
    import subprocess
    import sys

    from harness.report.plots import plot_pairs
    from tests.conftest import ROOT

    rows = aggregate(full_records())
    serial = plot_pairs(rows, tmp_path / "serial", "x", workers=1)
    out = subprocess.run([sys.executable, "-c", FORKED, str(tmp_path / "forked")], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    forked = json.loads(out.stdout)
    assert forked["pools"] == [2], "the plots were not drawn on forked workers"
    assert forked["matplotlib_in_parent"], "matplotlib must be loaded before the fork"
    assert forked["links"] == serial and len(serial) == 2  # both pairs, in their order
    assert list(serial) == list(dict.fromkeys(r.pair for r in rows))
    names = sorted(p.name for p in (tmp_path / "serial").glob("*.png"))
    assert len(names) == 3  # the NER pair's records have no curve
    for name in names:
        assert (tmp_path / "forked" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()


def test_no_fork_beside_other_python_threads(monkeypatch):
    import threading

    from harness.report import plots

    assert plots._safe_to_fork() == (threading.active_count() == 1)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not plots._safe_to_fork()
    finally:
        stop.set()
        t.join()


def test_a_long_strategy_label_stays_inside_the_curve_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from harness.report import plots

    rows = [r for r in aggregate(full_records()) if r.curve]
    long = "x" * 64  # the longest label a suite accepts
    rows[0] = dataclasses.replace(rows[0], label=long)
    plots.curve_plot(rows, tmp_path / "c.png")
    fig, ax = plots._canvas_of("curve")
    renderer = fig.canvas.get_renderer()
    key = [t for t in ax.texts if t.get_text() == long]
    assert len(key) == 1, "the key has no entry for the long label"
    box = key[0].get_window_extent(renderer)
    assert box.x0 > ax.get_window_extent(renderer).x1, "the key overlaps the axes"
    assert box.x1 <= fig.bbox.width, (box, fig.bbox.width)


def test_a_plot_does_not_depend_on_the_plots_drawn_before_it(tmp_path, monkeypatch):
    """Each thread reuses one figure per plot kind; what a plot sets (log scale, a wider figure,
    more curves, the key) must not leak into the next one."""
    pytest.importorskip("matplotlib")
    import threading

    from harness.report import plots
    from harness.report.aggregate import PARETO_COST

    monkeypatch.setattr(plots, "_canvases", threading.local())
    rows = aggregate(full_records())
    a = [r for r in rows if r.pair == "effnet-digits"]
    spread = [dataclasses.replace(r, cost={**r.cost, PARETO_COST: dataclasses.replace(r.cost[PARETO_COST],
                                                                                    mean=r.cost[PARETO_COST].mean * 100 ** i)})
              for i, r in enumerate(a)]  # > 20x apart: a log-scale x axis
    others = [dataclasses.replace(r, label=r.label * 4) for r in a[1:]]  # a wider key, fewer curves

    def draw(name, pareto_rows, curve_rows):
        return (pareto_plot(pareto_rows, tmp_path / f"{name}-p.png").read_bytes(),
                curve_plot(curve_rows, tmp_path / f"{name}-c.png").read_bytes())

    first = draw("first", a, a)
    assert draw("other", spread, others) != first
    assert draw("again", a, a) == first
    monkeypatch.setattr(plots, "_canvases", threading.local())
    assert draw("fresh", a, a) == first


def test_report_jobs_flag(tmp_path, capsys):
    results = tmp_path / "results"
    for r in full_records():
        write_record(results / "golden", r)
    assert main(["report", "--results", str(results), "--reports", str(tmp_path / "rep"), "-j", "2"]) == 0
    assert len(list((tmp_path / "rep" / "golden").glob("*.png"))) == 3
    with pytest.raises(SystemExit) as e:
        main(["report", "--results", str(results), "--jobs", "0"])
    assert e.value.code == 2 and "expected a whole number >= 1, got '0'" in capsys.readouterr().err


def test_report_leaves_the_committed_baseline_out(tmp_path, capsys):
    results = tmp_path / "results"
    recs = records()
    for r in recs:
        write_record(results / "golden", r)
    for r in recs:  # the same suite under results/baselines/: other run_ids, must not add seeds
        write_record(results / "baselines" / "golden", r.model_copy(update={"run_id": r.run_id + "-base"}))
    out = tmp_path / "board.md"
    assert main(["report", "--results", str(results), "--out", str(out), "--no-plots", "--no-export"]) == 0
    assert "from 12 run records" in out.read_text()
    assert main(["report", "--results", str(results / "baselines"), "--out", str(out), "--no-plots", "--no-export"]) == 0
    assert "from 12 run records" in out.read_text()


def _broken_plot(rows, path, styles=None):
    raise RuntimeError("the plot broke")


def _plot_after_the_tables(rows, path, styles=None):
    """A plot that can only finish once ``meanwhile`` has run in the parent (it writes the file
    this waits for): proof that the two overlap."""
    import time

    flag = path.parent.parent / "tables-made"
    deadline = time.monotonic() + 20
    while not flag.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("meanwhile did not run while the plots were drawn")
        time.sleep(0.01)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    return path


IN_WORKERS = """
import json, sys
from pathlib import Path
from harness.report import plots
from harness.report.aggregate import aggregate
from harness.report.export import write_report
from tests.unit.test_report_markdown_golden import full_records
from tests.unit.test_report_outputs import _broken_plot, _plot_after_the_tables

out, rows = Path(sys.argv[1]), aggregate(full_records())
assert plots._safe_to_fork()
drawn_by = dict(plots.KINDS)
plots.KINDS.update({kind: (shown, _plot_after_the_tables) for kind, (shown, _) in drawn_by.items()})
seen = []
def meanwhile(links):
    seen.append(links)
    (out / "tables-made").touch()
links = plots.plot_pairs(rows, out / "plots", "p", workers=2, meanwhile=meanwhile)
pngs = sorted(p.name for p in (out / "plots").glob("*.png"))

plots.KINDS.update(drawn_by)
plots.KINDS["pareto"] = (drawn_by["pareto"][0], _broken_plot)
try:
    write_report(rows, out / "board" / "board.md", jobs=2)
    failed = None
except RuntimeError as e:
    failed = str(e)
left = sorted(p.name for p in (out / "board").glob("*") if p.is_file()) if (out / "board").exists() else []
print(json.dumps({"links": links, "seen": seen, "pngs": pngs, "failed": failed, "left": left}))
"""


def test_on_forked_workers_the_tables_are_made_meanwhile_and_written_after(tmp_path):
    """In a fresh process (as ``harness report`` is, and pytest's own threads would keep plots
    in-process here): ``meanwhile`` runs while the workers draw (each plot waits for it), and a
    plot that fails leaves neither a markdown linking it nor exports."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("pyarrow")
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-c", IN_WORKERS, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["seen"] == [got["links"]] and got["links"] == {
        "effnet-digits": {"pareto": "p/effnet-digits-pareto.png", "curve": "p/effnet-digits-curve.png"},
        "minilm-wnut16": {"pareto": "p/minilm-wnut16-pareto.png"}}
    assert got["pngs"] == ["effnet-digits-curve.png", "effnet-digits-pareto.png", "minilm-wnut16-pareto.png"]
    assert got["failed"] == "the plot broke" and got["left"] == []


def test_a_failed_plot_in_process_leaves_no_new_report_files(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from harness.report import plots
    from harness.report.export import write_report

    monkeypatch.setitem(plots.KINDS, "pareto", (plots.KINDS["pareto"][0], _broken_plot))
    out = tmp_path / "board.md"
    with pytest.raises(RuntimeError, match="the plot broke"):
        write_report(aggregate(full_records()), out, jobs=1)
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == []


def test_without_matplotlib_the_report_says_so_and_links_no_plot(tmp_path, monkeypatch):
    """Not installed, or installed but failing to import: a warning, and the tables as usual."""
    import importlib.util

    from harness.report.export import write_report

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    out = tmp_path / "board.md"
    written, warnings = write_report(aggregate(full_records()), out, exports=False)
    assert written == [out] and warnings == ["plots skipped: matplotlib is not installed (pip install 'transfer-harness[report]')"]
    assert "![" not in out.read_text() and not (tmp_path / "board").exists()
    monkeypatch.undo()

    from harness.report import plots

    def broken_install(*args):  # where a plot's first `import matplotlib...` happens
        raise ImportError("libfreetype.so.6: cannot open shared object file")

    monkeypatch.setattr(plots, "_draw_all", broken_install)
    written, warnings = write_report(aggregate(full_records()), out, exports=False)
    assert written == [out] and len(warnings) == 1 and warnings[0].startswith("plots skipped: matplotlib does not import")
    assert "![" not in out.read_text()


def test_a_plot_planned_but_not_drawn_is_an_error(tmp_path, monkeypatch):
    """The links are promised before drawing: a kind's predicate must agree with its plot function."""
    pytest.importorskip("matplotlib")
    from harness.report import plots

    monkeypatch.setitem(plots.KINDS, "pareto", (plots.KINDS["pareto"][0], lambda rows, path, styles: None))
    with pytest.raises(RuntimeError, match="planned but not drawn"):
        plots.plot_pairs(aggregate(full_records()), tmp_path, "x", workers=1)


def test_plots_leave_the_callers_rcparams_alone(tmp_path):
    """Plots are drawn without hinting, in a worker for good, here only inside the drawing."""
    matplotlib = pytest.importorskip("matplotlib")
    from harness.report import plots

    before = matplotlib.rcParams["text.hinting"]
    assert before != plots.HINTING
    rows = aggregate(full_records())
    plots.plot_pairs(rows, tmp_path / "a", "a", workers=1)
    pareto_plot(rows, tmp_path / "p.png")
    assert matplotlib.rcParams["text.hinting"] == before
