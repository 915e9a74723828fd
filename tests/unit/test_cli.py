"""The CLI in-process: exit codes and what it prints."""

from __future__ import annotations

import json

from harness.cli import main
from tests.conftest import TINY_SUITE


def test_validate_ok(write_suite, capsys):
    assert main(["validate", str(write_suite(TINY_SUITE))]) == 0
    assert capsys.readouterr().out.strip() == "ok"


def test_validate_errors_exit_2_without_traceback(write_suite, capsys):
    bad = write_suite(TINY_SUITE.replace("epochs: 1", "epoch: 1"), "bad.yaml")
    good = write_suite(TINY_SUITE, "good.yaml")
    assert main(["validate", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: defaults.epoch: unknown key 'epoch'. Did you mean: epochs" in err
    assert "Traceback" not in err


def test_plan_json_lists_resolved_configs(write_suite, capsys):
    assert main(["plan", str(write_suite(TINY_SUITE)), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert len(runs) == 6
    assert runs[-1]["config"]["train"]["lr"] == 3e-3
    assert all(r["run_id"].startswith(f"{r['pair']}.{r['label']}.s{r['seed']}-") for r in runs)


def test_ls_lists_registries(capsys):
    assert main(["ls", "strategies"]) == 0
    out = capsys.readouterr().out
    assert "full_finetune" in out and "linear_probe" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in ("dann", "coral", "mmd", "importance_weighting", "subspace_alignment"):
        assert "[unlabeled]" in lines[name], name
    assert "[unlabeled]" not in lines["full_finetune"] and "[unlabeled]" not in lines["contrastive"]
    assert main(["ls", "targets"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "[domains]" in lines["sklearn"] and "[domains]" in lines["packaged"]


def test_run_only_matching_nothing_is_a_clear_error(write_suite, tmp_path, capsys):
    code = main(["run", str(write_suite(TINY_SUITE)), "--only", "nope*", "--results", str(tmp_path / "r")])
    assert code == 1
    assert "matches no run" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_report_without_records_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path)]) == 1
    assert "no run records" in capsys.readouterr().err


def test_run_then_rerun_skips_and_report(write_suite, tmp_path, capsys):
    suite = write_suite(TINY_SUITE)
    results = tmp_path / "results"
    assert main(["run", str(suite), "--results", str(results), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert "6 run(s) executed, 0 already done" in first
    assert main(["run", str(suite), "--results", str(results), "--no-progress"]) == 0
    assert "0 run(s) executed, 6 already done" in capsys.readouterr().out
    out = tmp_path / "board.md"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "### cnn-images" in out.read_text()


def test_executor_ray_without_ray_says_how_to_install_it(write_suite, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` raises ImportError
    code = main(["run", str(write_suite(TINY_SUITE)), "--executor", "ray", "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and "pip install 'transfer-harness[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing written


def test_report_takes_a_smoke_suite_by_the_name_its_directory_and_report_have(write_suite, tmp_path, capsys):
    results, reports = tmp_path / "r", tmp_path / "reports"
    assert main(["run", str(write_suite(TINY_SUITE)), "--smoke", "--results", str(results), "--no-progress"]) == 0
    for name in ("tiny", "tiny-smoke"):
        assert main(["report", "--results", str(results), "--reports", str(reports), "--suite", name, "--no-plots",
                     "--no-export"]) == 0
    assert (reports / "tiny-smoke.md").is_file()
    assert main(["report", "--results", str(results), "--suite", "tiny-smok", "--no-plots"]) != 0
