"""``harness.api``: README's example runs as written, and the commands go through the API."""

from __future__ import annotations

import json
import re

import pytest

from harness import api
from harness.cli import main
from harness.errors import HarnessError
from tests.conftest import ROOT, TINY_SUITE


def readme_example() -> str:
    """The python block after README's ``<!-- api-example -->`` marker: the test runs what users read."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- api-example -->\n```python\n(.*?)\n```", text, re.S)
    assert found, "README.md lost its <!-- api-example --> python block"
    return found.group(1)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), "README.md:api-example", "exec"), scope)  # noqa: S102 - our own README
    assert len(scope["runs"]) == 4 and all(r.config()["train"]["lr"] == 3e-3 for r in scope["runs"])
    assert len(scope["outcome"].done) == 4 and all(r.status == "ok" for r in scope["outcome"].done)
    df = scope["df"]
    assert len(df) == 4 and set(df["status"]) == {"ok"} and set(df["label"]) == {"scratch", "full_finetune"}
    assert {"run_id", "seed", "primary", "metric.accuracy", "cost.wall_s"} <= set(df.columns)
    assert df["primary"].between(0, 1).all()
    assert (tmp_path / "reports" / "tiny.md").is_file() and "### cnn-images" in (tmp_path / "reports" / "tiny.md").read_text()
    assert str(scope["written"].markdown) in capsys.readouterr().out
    # records are files under results/<suite>/, the cache is not among them
    assert not list((tmp_path / "results").rglob("*.pt"))


def test_load_records_of_an_empty_directory_is_an_empty_frame(tmp_path):
    df = api.load_records(tmp_path)
    assert df.empty and "run_id" in df.columns


def test_plan_only_matching_nothing_and_an_unknown_executor_are_errors(write_suite):
    suite = api.load_suite(write_suite(TINY_SUITE))
    with pytest.raises(HarnessError, match="matches no run"):
        api.plan(suite, only="nope*")
    assert [r.label for r in api.plan(suite, only="cnn-images/scratch")] == ["scratch", "scratch"]
    with pytest.raises(HarnessError, match="unknown executor 'dask'"):
        api.make_executor("dask", api.exec_options(), api.ExecutorSettings())


def test_the_commands_call_the_api(write_suite, tmp_path, monkeypatch, capsys):
    from harness.executors.base import Outcome

    calls = []
    monkeypatch.setattr(api, "run", lambda runs, executor, results, **kw: calls.append(("run", executor, len(runs),
                                                                                        kw["settings"])) or Outcome())
    monkeypatch.setattr(api, "report", lambda results, out, **kw: calls.append(("report", str(results), kw["html"])) or [])
    monkeypatch.setattr(api, "registry", lambda what: calls.append(("registry", what)) or [{"name": "x", "description": "d", "tag": ""}])
    suite = write_suite(TINY_SUITE)
    assert main(["run", str(suite), "--results", str(tmp_path / "r"), "--executor", "pool", "--workers", "3"]) == 0
    assert main(["report", "--results", str(tmp_path / "r"), "--html"]) == 0
    assert main(["ls", "metrics"]) == 0
    run, report, ls = calls
    assert run[:3] == ("run", "pool", 6) and run[3].workers == 3 and run[3].owned
    assert report == ("report", str(tmp_path / "r"), True) and ls == ("registry", "metrics")
    assert "x  d" in capsys.readouterr().out


def test_ls_json_is_one_document(capsys):
    assert main(["ls", "strategies", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["dann"]["tag"] == "[unlabeled]" and entries["full_finetune"]["tag"] == ""
    assert entries["linear_probe"]["description"]
    assert main(["ls", "targets", "--json"]) == 0
    assert {e["name"]: e["tag"] for e in json.loads(capsys.readouterr().out)}["sklearn"] == "[domains]"
