"""`harness baseline`: re-baselining is one command — run afresh, show what moved, replace the
records only when every run is ok."""

from __future__ import annotations

import json

from harness import api
from harness.cli import main
from tests.conftest import TINY_SUITE

SUITE = TINY_SUITE.replace("seeds: [0, 1]", "seeds: [0]").replace("  - scratch\n", "")


def records(path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in path.glob("*.json")}


def test_baseline_makes_then_replaces_the_records_and_shows_what_moved(write_suite, tmp_path, capsys):
    base = tmp_path / "baselines" / "tiny"
    assert main(["baseline", str(write_suite(SUITE)), "--baseline", str(base), "--no-progress"]) == 0
    first = records(base)
    assert len(first) == 2 and all(r["status"] == "ok" and r["env"]["git_sha"] for r in first.values())
    # the records and the predictions each names beside it: no lock, no cache
    preds = sorted(r["predictions"]["file"] for r in first.values())
    assert len(preds) == 2 and sorted(p.name for p in base.iterdir()) == sorted([*first, *preds])
    rescored = api.rescore(base)  # rescore works on the baseline: every record's predictions are there
    assert not rescored.skipped and {r.run_id for r in rescored.rows} == {r["run_id"] for r in first.values()}
    assert not [p for p in base.parent.iterdir() if p.name.startswith(".tiny.new-")]  # its work dir is gone
    captured = capsys.readouterr()
    assert "baseline replaced: 2 records" in captured.out and "2 with their per-example predictions" in captured.out
    assert "what moves" not in captured.out
    shas = {r["env"]["git_sha"] for r in first.values()}
    # a baseline no commit can reproduce is called out (the nightly workflow reruns the baseline's commit)
    assert ("made from uncommitted code" in captured.err) == any(s.endswith("-dirty") for s in shas)
    # an intended change: the fine-tune's lr; the new baseline holds the new runs, the table says what moved
    changed = write_suite(SUITE.replace("{lr: 3e-3}", "{lr: 3e-2}"), "changed.yaml")
    assert main(["baseline", str(changed), "--baseline", str(base), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "what moves against the baseline being replaced (2 records)" in out and "full_finetune" in out
    second = records(base)
    assert len(second) == 2 and set(second) != set(first)
    assert {r["config"]["train"]["lr"] for r in second.values() if r["strategy"] == "full_finetune"} == {0.03}


def test_a_failed_run_leaves_the_baseline_as_it_was(write_suite, tmp_path, capsys):
    base = tmp_path / "baselines" / "tiny"
    assert main(["baseline", str(write_suite(SUITE)), "--baseline", str(base), "--no-progress"]) == 0
    before = records(base)
    broken = write_suite(SUITE.replace("defaults: {", "defaults: {timeout_s: 0.001, "), "broken.yaml")
    assert main(["baseline", str(broken), "--baseline", str(base), "--no-progress"]) == 1
    assert "baseline not replaced" in capsys.readouterr().err
    assert records(base) == before
    assert not [p for p in base.parent.iterdir() if p.name.startswith(".tiny.new-")]


def test_execution_options_reach_the_fresh_run_and_every_other_run_option_keeps_its_default(
        write_suite, tmp_path, monkeypatch):
    from harness import cli

    seen = {}

    def fake_run(args):
        seen.update(vars(args))
        return 1  # "the run failed": the baseline is left alone, and nothing else runs

    monkeypatch.setattr(cli, "cmd_run", fake_run)
    suite = write_suite(SUITE)
    assert main(["baseline", str(suite), "--baseline", str(tmp_path / "b"), "--executor", "pool", "--workers", "3",
                 "--threads", "1", "--no-progress"]) == 1
    assert (seen["executor"], seen["workers"], seen["threads"], seen["no_progress"]) == ("pool", 3, 1, True)
    # a fresh, complete run of the whole suite into its own directory, with its own cache
    assert seen["only"] is None and seen["smoke"] is False and seen["retry_failed"] is False
    assert ".b.new-" in seen["cache_dir"] and seen["wait"] is False and seen["file"] == str(suite)
    assert ".b.new-" in seen["results"] and "baseline" not in seen
