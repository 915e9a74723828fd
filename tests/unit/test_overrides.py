"""``--set KEY.PATH=VALUE``: applied to the suite's data before it is checked, named by its
issues, recorded in each run's config, and part of what a run computes (its run_id)."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.config.overrides import parse_value
from tests.conftest import TINY_SUITE


@pytest.mark.parametrize(("text", "value"), [("1e-4", 1e-4), ("-2.5E+3", -2500.0), ("5", 5), ("0.1", 0.1),
                                             ("true", True), ("null", None), ("[0, 1]", [0, 1]),
                                             ("{r: 8}", {"r": 8}), ("adamw", "adamw"), ("cuda:0", "cuda:0")])
def test_values_read_as_yaml_with_yaml_1_2_numbers(text, value):
    got = parse_value(text)
    assert got == value and type(got) is type(value)


def plan(suite, *sets: str) -> dict[str, dict]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["plan", str(suite), "--json", *[a for s in sets for a in ("--set", s)]]) == 0
    return {f"{r['label']}.s{r['seed']}": r for r in json.loads(out.getvalue())}


def test_a_set_value_is_planned_recorded_and_changes_the_run_id(write_suite):
    suite = write_suite(TINY_SUITE)
    base = plan(suite)
    changed = plan(suite, "defaults.epochs=2", "pairs[0].train.lr=1e-4")
    cfg = changed["scratch.s0"]["config"]
    assert cfg["train"]["epochs"] == 2 and cfg["train"]["lr"] == 1e-4
    assert cfg["overrides"] == ["defaults.epochs=2", "pairs[0].train.lr=1e-4"]
    assert "overrides" not in base["scratch.s0"]["config"]
    # a different value computes something else: no run may reuse another's record
    assert all(changed[k]["run_id"] != base[k]["run_id"] for k in base)
    assert plan(suite, "pairs[0].train.lr=3e-4")["scratch.s0"]["run_id"] != changed["scratch.s0"]["run_id"]
    # the file's own value set again computes what the file does: the same run
    assert plan(suite, "defaults.epochs=1")["scratch.s0"]["run_id"] == base["scratch.s0"]["run_id"]
    # a strategy's own block, through its list entry
    assert plan(suite, "strategies[2].full_finetune.lr=0.5")["full_finetune.s1"]["config"]["train"]["lr"] == 0.5


def test_a_set_value_reaches_the_record(write_suite, tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["run", str(write_suite(TINY_SUITE)), "--results", str(results), "--no-progress", "--only",
                 "cnn-images/scratch", "--set", "seeds=[3]", "--set", "pairs[0].train.lr=1e-4"])
    assert code == 0, capsys.readouterr()
    [path] = (results / "tiny").glob("*.json")
    record = json.loads(path.read_text())
    assert record["seed"] == 3 and record["config"]["train"]["lr"] == 1e-4
    assert record["config"]["overrides"] == ["seeds=[3]", "pairs[0].train.lr=1e-4"]
    assert record["env"]["hostname_hash"].startswith("sha256:") and "hostname" not in record["env"]


@pytest.mark.parametrize(("command", "sets", "says"), [
    ("run", ["pairs[5].train.lr=1e-4"], "--set pairs[5].train.lr=1e-4: pairs[5].train.lr: no pair 5 (the suite has 1)"),
    ("run", ["defaults.epochs=abc"], "--set defaults.epochs=abc: defaults.epochs: Input should be a valid integer"),
    ("run", ["defaults.epocs=2"], "--set defaults.epocs=2: defaults.epocs: unknown key 'epocs'. Did you mean: epochs"),
    ("plan", ["pairs.lr=1"], "--set pairs.lr=1: pairs.lr: pairs is a list, not a mapping"),
    ("validate", ["defaults.lr"], "--set defaults.lr: <root>: expected KEY.PATH=VALUE"),
    ("validate", ["seeds=.nan"], "--set seeds=.nan: seeds: '.nan' is not a finite number"),
])
def test_a_bad_set_exits_2_naming_it(write_suite, tmp_path, capsys, command, sets, says):
    suite = write_suite(TINY_SUITE)
    args = [command, str(suite), *[a for s in sets for a in ("--set", s)]]
    if command == "run":
        args += ["--results", str(tmp_path / "r")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{suite}: {says}" in err and "Traceback" not in err
    assert f"{suite}:3:" not in err and f"{suite}:1:" not in err  # the --set is named, not a line of the file
    assert not (tmp_path / "r").exists()


def test_every_bad_set_is_reported_at_once_with_the_files_own_issues(write_suite, capsys):
    suite = write_suite(TINY_SUITE.replace("batch_size: 16", "batch_sise: 16"))
    assert main(["validate", str(suite), "--set", "pairs[1].id=x", "--set", "defaults.epochs=-1"]) == 2
    err = capsys.readouterr().err
    assert f"{suite}:3: defaults.batch_sise: unknown key" in err
    assert "--set pairs[1].id=x: pairs[1].id: no pair 1 (the suite has 1)" in err
    assert "--set defaults.epochs=-1: defaults.epochs:" in err
    assert "3 error(s) in 1 file(s)" in err  # a --set is part of the file it changes
