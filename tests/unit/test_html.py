"""`harness report --html`: one self-contained page per suite from the aggregated rows (the browser
half is tests/integration/test_html_browser.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from harness.cli import main
from harness.records import RunRecord, write_record
from harness.report.aggregate import aggregate
from harness.report.html import render_html

# label → (validation curve of seed 0, test accuracy of seed 0, wall seconds): full fine-tuning still rises
CELLS = {"full_finetune": ([0.5, 0.7, 0.8], 0.82, 40.0), "linear_probe": ([0.7, 0.71, 0.71], 0.72, 5.0),
         "scratch": ([0.3, 0.4, 0.4], 0.40, 30.0)}


def records(pairs: tuple[str, ...] = ("digits",)) -> list[RunRecord]:
    out = []
    for pair in pairs:
        for label, (curve, acc, wall) in CELLS.items():
            for seed in (0, 1, 2):
                d = 0.005 * seed
                out.append(RunRecord(
                    run_id=f"{pair}.{label}.s{seed}-x", suite="demo", pair=pair, strategy=label, label=label,
                    seed=seed, status="ok", task="image-classification", primary_metric="accuracy", config={},
                    metrics={"accuracy": acc + d, "macro_f1": acc + d - 0.02},
                    curve=[{"epoch": e + 1, "val_accuracy": v + d} for e, v in enumerate(curve)],
                    cost={"wall_s": wall + seed, "trainable_params": 1000},
                    started_at="2026-01-01T00:00:00+00:00", finished_at="2026-01-01T00:01:00+00:00"))
    return out


class Page(HTMLParser):
    """What a self-contained page must not have: anything fetched from elsewhere."""

    def __init__(self):
        super().__init__()
        self.external: list[str] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith(("#", "data:")):
                self.external.append(f"{tag} {key}={a[key]}")
        if tag == "link":
            self.external.append("link")


def test_page_is_self_contained_and_has_a_table_and_a_plot_per_pair():
    text = render_html(aggregate(records(("digits", "wnut")), ))
    page = Page()
    page.feed(text)
    assert page.external == []
    assert "<script src" not in text and "@import" not in text
    tables = [a for t, a in page.tags if t == "table"]
    assert [a["id"] for a in tables] == ["pair0", "pair1"]
    assert text.count("<svg") == 2 and text.count("<circle") == 6
    assert [a["data-table"] for t, a in page.tags if t == "input"] == ["pair0", "pair1"]


def test_marks_explain_themselves_on_hover():
    text = render_html(aggregate(records()))
    marks = re.findall(r'<span class="mark" title="([^"]*)">(.)</span>', text)
    assert len(marks) == 1
    title, mark = marks[0]
    assert mark == "↗" and "still rising" in title
    row = re.search(r'<tr id="pair0-r0"[^>]*>(.*?)</tr>', text).group(1)
    assert "full_finetune" in row and "↗" in row  # the row the mark belongs to


def test_rows_carry_sort_keys_and_the_pareto_front():
    text = render_html(aggregate(records()))
    rows = re.findall(r'<tr id="pair0-r\d"[^>]*>(.*?)</tr>', text)
    assert [re.findall(r"<td[^>]*>([a-z_]+)</td>", r)[0] for r in rows] == ["full_finetune", "linear_probe", "scratch"]
    acc = [float(re.findall(r'data-sort="([^"]+)"', r)[1]) for r in rows]
    assert acc == sorted(acc, reverse=True) and abs(acc[0] - 0.825) < 1e-9
    front = re.findall(r'class="front" data-row="(pair0-r\d)"', text)
    assert sorted(front) == ["pair0-r0", "pair0-r1"]  # scratch: slower than the probe and worse


def test_report_html_flag_writes_the_page(tmp_path, capsys):
    results = tmp_path / "results"
    for r in records():
        write_record(results / "demo", r)
    argv = ["report", "--results", str(results), "--reports", str(tmp_path / "r"), "--no-plots", "--no-export"]
    assert main(argv) == 0
    assert not (tmp_path / "r" / "demo.html").exists()
    assert main([*argv, "--html"]) == 0
    page = (tmp_path / "r" / "demo.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<h1>demo</h1>" in page
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("demo.md")  # stdout: the markdown path only
