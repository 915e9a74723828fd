"""The report's header names the machines its records came from, warns when they are several, and
names the runs a busy machine slowed (issue 31); the record keeps the load average of each run."""

from __future__ import annotations

from harness.records import RecordSummary, read_record, write_record
from harness.report.aggregate import aggregate
from harness.report.markdown import render
from tests.conftest import TINY_SUITE
from tests.factories import make_record

EPYC = {"cpu_model": "AMD EPYC 7B13", "cpu_capability": "AVX2", "cpu_count": 2, "torch_threads": 2,
        "device": "cpu", "device_name": "x86_64", "packages": {"torch": "2.14.1"}, "hostname": "a"}
XEON = {**EPYC, "cpu_model": "Intel Xeon Platinum 8481C", "cpu_capability": "AVX512", "hostname": "b"}


def cell(label, accs, env=None, envs=None, pair="digits"):
    """One cell's records, seed by seed; ``env`` for every seed or ``envs`` one per seed (None: not recorded)."""
    envs = envs or [env] * len(accs)
    return [make_record(label, seed, acc, pair=pair, **({} if e is None else {"env": e}))
            for seed, (acc, e) in enumerate(zip(accs, envs, strict=True))]


def board(records) -> str:
    return render(aggregate(records))


def test_one_machine_is_named_with_its_count():
    text = board(cell("scratch", [0.9, 0.91, 0.92], EPYC) + cell("linear_probe", [0.93, 0.94], EPYC))
    assert "Machine: 5 runs on AMD EPYC 7B13 · AVX2 · 2 threads of 2 CPUs · device cpu." in text
    assert "machines**" not in text and "Busy machine" not in text


def test_a_report_that_mixes_machines_says_so_and_counts_each():
    text = board(cell("scratch", [0.9, 0.91, 0.92], EPYC) + cell("linear_probe", [0.93, 0.94], XEON)
                 + cell("full_finetune", [0.97, 0.98], envs=[EPYC, XEON]))
    assert "> ⚠ **These records come from 2 machines**" in text
    assert "> - 4 runs: AMD EPYC 7B13 · AVX2 · 2 threads of 2 CPUs · device cpu" in text
    assert "> - 3 runs: Intel Xeon Platinum 8481C · AVX512 · 2 threads of 2 CPUs · device cpu" in text
    assert "Cells whose seeds ran on several: digits / `full_finetune`." in text  # only the mixed cell
    assert "`scratch`." not in text.split("Cells whose seeds")[1].split("\n")[0]


def test_threads_or_a_gpu_make_another_machine():
    gpu = {**EPYC, "device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "torch_threads": 8}
    text = board(cell("scratch", [0.9], EPYC) + cell("linear_probe", [0.93], gpu))
    assert "2 machines" in text
    assert "8 threads of 2 CPUs · device cuda:0 (NVIDIA H100 80GB HBM3)" in text


def test_records_that_do_not_name_their_machine_add_no_header():
    text = board(cell("scratch", [0.9, 0.91]))
    assert "Machine" not in text and "machines" not in text
    mixed = board(cell("scratch", [0.9, 0.91], EPYC) + cell("linear_probe", [0.93]))  # one old, unrecorded
    assert "2 machines" in mixed and "> - 1 run: machine not recorded" in mixed


def test_a_run_on_a_machine_loaded_beyond_its_cores_is_named_with_its_cell():
    quiet = {**EPYC, "load_start": [1.2, 1.0, 0.9], "load_end": [2.45, 1.5, 1.0]}  # a run alone loads its cores
    busy_end = {**EPYC, "load_start": [0.5, 0.5, 0.5], "load_end": [5.25, 3.0, 1.0]}
    busy_start = {**EPYC, "load_start": [3.1, 2.0, 1.0]}  # no end recorded: the start says enough
    text = board(cell("scratch", [0.9, 0.91, 0.92], envs=[quiet, busy_end, quiet])
                 + cell("linear_probe", [0.93, 0.94], envs=[busy_start, quiet]) + cell("full_finetune", [0.97], quiet))
    line = next(x for x in text.splitlines() if "Busy machine" in x)
    assert "2 runs started or ended with a 1-minute load average above 1.25 × the machine's logical CPUs" in line
    assert "digits / `scratch` (s1: load 5.25 on 2 CPUs)" in line
    assert "digits / `linear_probe` (s0: load 3.10 on 2 CPUs)" in line
    assert "full_finetune" not in line


def test_old_records_without_a_load_average_warn_of_nothing():
    assert "Busy machine" not in board(cell("scratch", [0.9, 0.91], EPYC))


def test_the_summary_reads_the_machine_and_a_malformed_env_still_reads(tmp_path):
    rec = make_record("scratch", 0, 0.9, env={**EPYC, "load_start": [0.1, 0.2, 0.3]})
    summary = read_record(write_record(tmp_path, rec), RecordSummary)
    assert summary.machine.cpu_model == "AMD EPYC 7B13" and summary.machine.load_start == [0.1, 0.2, 0.3]
    assert "machine_env" not in (tmp_path / f"{rec.run_id}.json").read_text()  # env is written once, as env
    bad = tmp_path / "bad.json"
    bad.write_text(rec.model_dump_json().replace('"env":{', '"env":"oops","was":{'))
    assert '"env":"oops"' in bad.read_text()
    assert read_record(bad, RecordSummary).machine.cpu_model is None


def test_a_run_records_the_load_average_at_its_start_and_end(write_suite, monkeypatch):
    from harness.plan import expand
    from harness.run import cost
    from harness.run.execute import execute
    from harness.suite import load_suite

    loads = iter([[0.5, 0.4, 0.3], [3.5, 1.0, 0.5]])
    monkeypatch.setattr(cost, "load_average", lambda: next(loads))
    spec = next(s for s in expand(load_suite(write_suite(TINY_SUITE))) if s.strategy == "linear_probe")
    env = execute(spec).env
    assert env["load_start"] == [0.5, 0.4, 0.3] and env["load_end"] == [3.5, 1.0, 0.5]
    assert env["cpu_model"] == cost.cpu_model() and "cpu_count" in env and "torch_threads" in env


def test_load_average_is_three_numbers_or_none():
    from harness.run.cost import load_average

    got = load_average()
    assert got is None or (len(got) == 3 and all(isinstance(x, float) for x in got))
