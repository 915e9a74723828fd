"""The regression gate on fixture records that do and do not regress (exit codes asserted)."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.records import write_record
from harness.report.aggregate import aggregate
from harness.report.compare import GateOptions, compare_rows
from tests.factories import make_record

BASE_ACC = {"scratch": [0.60, 0.61, 0.62], "full_finetune": [0.80, 0.82, 0.84]}  # σ 0.01 and 0.02


def rec(label, seed, acc, wall=10.0, status="ok", suite="nightly"):
    return make_record(label, seed, acc, run_id=f"p.{label}.s{seed}-x", suite=suite, status=status,
                       extra={"macro_f1": acc - 0.05}, cost={"wall_s": wall})


def write(directory, records):
    directory.mkdir(parents=True, exist_ok=True)
    for r in records:
        write_record(directory, r)
    return directory


def baseline(tmp_path):
    return write(tmp_path / "baseline", [rec(lab, s, a) for lab, accs in BASE_ACC.items() for s, a in enumerate(accs)])


def results(tmp_path, ft_shift=0.0, scratch_shift=0.0, wall=10.0, drop=(), fail=()):
    out = []
    for label, accs in BASE_ACC.items():
        if label in drop:
            continue
        shift = ft_shift if label == "full_finetune" else scratch_shift
        for s, a in enumerate(accs):
            failed = (label, s) in fail
            out.append(rec(label, s, a + shift, wall=wall, status="failed" if failed else "ok"))
    return write(tmp_path / "results", out)


def gate(tmp_path, *extra):
    return main(["compare", "--baseline", str(tmp_path / "baseline"), "--results", str(tmp_path / "results"), *extra])


def test_identical_results_pass(tmp_path, capsys):
    baseline(tmp_path)
    results(tmp_path)
    assert gate(tmp_path) == 0
    out = capsys.readouterr().out
    assert "PASS: 0 regression(s) in 4 comparison(s)" in out
    assert "REGRESSION" not in out


def test_a_drop_every_seed_shares_fails_with_a_readable_table(tmp_path, capsys):
    # full_finetune: every seed 5 points lower: the paired differences agree (sd 0), so the
    # detectable change is the tolerance, 1 point
    baseline(tmp_path)
    results(tmp_path, ft_shift=-0.05)
    assert gate(tmp_path) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(lines) == 2  # accuracy and macro_f1 of full_finetune; scratch untouched
    assert all(line.startswith("p ") and "full_finetune" in line for line in lines)
    assert "-5.00" in lines[0] and "±1.00" in lines[0] and "paired, 3 seeds" in lines[0]  # change, detectable
    assert "82.00 ± 2.00 (n=3)" in lines[0] and "77.00 ± 2.00 (n=3)" in lines[0]
    assert "FAIL: 2 regression(s)" in out


def test_a_drop_inside_the_seed_spread_is_caught_when_every_seed_shares_it(tmp_path):
    # the old rule, max(0.01, 2 · σ_baseline = 0.04), let a 3-point drop of every seed pass
    baseline(tmp_path)
    results(tmp_path, ft_shift=-0.03)
    assert gate(tmp_path) == 1


def test_per_seed_changes_that_disagree_pass_and_the_detectable_change_is_their_noise(tmp_path, capsys):
    baseline(tmp_path)
    shifts = {0: -0.02, 1: +0.02, 2: -0.03}  # mean -0.01, sd 0.0265: not significant
    write(tmp_path / "results", [rec(lab, s, a + (shifts[s] if lab == "full_finetune" else 0.0))
                                 for lab, accs in BASE_ACC.items() for s, a in enumerate(accs)])
    assert gate(tmp_path) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "full_finetune  accuracy" in x)
    assert "±6.57" in line and "-1.00" in line  # t_0.975(2) · 0.02646 / √3 = 0.0657


def test_without_two_shared_seeds_the_gate_falls_back_to_k_sigma(tmp_path, capsys):
    baseline(tmp_path)
    write(tmp_path / "results", [rec(lab, s + 3, a - 0.03) for lab, accs in BASE_ACC.items() for s, a in enumerate(accs)])
    assert gate(tmp_path) == 1  # scratch: 0.03 > max(0.01, 2 · 0.01)
    out = capsys.readouterr().out
    ft = next(x for x in out.splitlines() if "full_finetune  accuracy" in x)
    assert "k·σ" in ft and "±4.00" in ft and ft.rstrip().endswith("ok")  # 0.03 < max(0.01, 2 · 0.02)
    assert gate(tmp_path, "--k", "1") == 1


def test_tolerance_floor_applies_when_the_baseline_is_noiseless(tmp_path):
    write(tmp_path / "baseline", [rec("scratch", s, 0.5) for s in range(3)])  # σ = 0
    write(tmp_path / "results", [rec("scratch", s, 0.495) for s in range(3)])
    assert gate(tmp_path) == 0  # 0.005 < tolerance 0.01
    assert gate(tmp_path, "--tolerance", "0.001") == 1


def test_improvement_is_not_a_regression(tmp_path, capsys):
    baseline(tmp_path)
    results(tmp_path, scratch_shift=+0.10)
    assert gate(tmp_path) == 0
    out = capsys.readouterr().out
    assert "IMPROVED: review" in out
    assert "PASS: 0 regression(s)" in out and "WARNING: 2 significant improvement(s) nobody explained" in out


def test_missing_strategy_and_new_failed_seeds_regress(tmp_path, capsys):
    baseline(tmp_path)
    results(tmp_path, drop=("scratch",))
    assert gate(tmp_path) == 1
    assert "MISSING" in capsys.readouterr().out
    results(tmp_path, fail=(("full_finetune", 1),))
    assert gate(tmp_path) == 1
    assert "FAILED SEEDS" in capsys.readouterr().out


def test_cost_gate_is_separate_and_configurable(tmp_path, capsys):
    baseline(tmp_path)
    results(tmp_path, wall=13.0)  # 30% slower, same accuracy
    assert gate(tmp_path) == 1
    out = capsys.readouterr().out
    assert "TOO SLOW" in out and "+30.0%" in out and "0 regression(s)" in out
    assert gate(tmp_path, "--max-slowdown", "0.5") == 0
    assert gate(tmp_path, "--cost-gate", "warn") == 0
    assert "warning only" in capsys.readouterr().out
    assert gate(tmp_path, "--cost-gate", "off") == 0
    assert "TOO SLOW" not in capsys.readouterr().out


def test_markdown_out(tmp_path):
    baseline(tmp_path)
    results(tmp_path, ft_shift=-0.05)
    out = tmp_path / "cmp.md"
    assert gate(tmp_path, "--out", str(out)) == 1
    text = out.read_text()
    assert text.startswith("# Regression check")
    assert ("| p | full_finetune | accuracy | 82.00 ± 2.00 (n=3) | 77.00 ± 2.00 (n=3) | -5.00 | ±1.00 | paired, 3 seeds "
            "| REGRESSION |") in text


def test_bad_input_exits_2_without_traceback(tmp_path, capsys):
    assert main(["compare", "--baseline", str(tmp_path / "nope"), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "baseline" in err and "nope" in err and "Traceback" not in err
    baseline(tmp_path)
    (tmp_path / "results").mkdir()
    assert gate(tmp_path) == 2
    assert "no run records of suite(s) nightly" in capsys.readouterr().err
    results(tmp_path)
    assert gate(tmp_path, "--cost-key", "wal_s") == 2
    assert "Unknown cost key 'wal_s'. Did you mean: wall_s" in capsys.readouterr().err


def test_other_suites_in_the_results_are_ignored(tmp_path):
    baseline(tmp_path)
    results(tmp_path)
    write(tmp_path / "results" / "other", [rec("scratch", 0, 0.0, suite="other")])
    assert gate(tmp_path) == 0


def test_compare_rows_thresholds():
    base = aggregate([rec("full_finetune", s, a) for s, a in enumerate(BASE_ACC["full_finetune"])])
    new = aggregate([rec("full_finetune", s, a - 0.041) for s, a in enumerate(BASE_ACC["full_finetune"])])
    cmp = compare_rows(base, new, GateOptions(metrics=("accuracy",), max_slowdown=None))
    (change,) = cmp.changes
    assert change.method == "paired" and change.seeds == 3
    assert change.threshold == pytest.approx(0.01)  # every seed moved alike: the tolerance
    assert change.delta == pytest.approx(-0.041)
    assert change.status == "regression"
    assert cmp.slowdowns == []


def test_results_root_holding_the_baseline_compares_only_the_new_runs(tmp_path):
    # `--results results` where results/baselines/nightly is the committed baseline: the baseline's
    # records must not be read as more seeds of the new results (they would hide the regression)
    root = tmp_path / "results"
    write(root / "baselines" / "nightly", [rec(lab, s, a) for lab, accs in BASE_ACC.items() for s, a in enumerate(accs)])
    new = [rec(lab, s, a - (0.05 if lab == "full_finetune" else 0)) for lab, accs in BASE_ACC.items()
           for s, a in enumerate(accs)]
    write(root / "nightly", [r.model_copy(update={"run_id": r.run_id + "-new"}) for r in new])
    assert main(["compare", "--baseline", str(root / "baselines" / "nightly"), "--results", str(root)]) == 1


def test_the_gate_reads_whole_records_the_report_only_what_it_shows(tmp_path, capsys):
    """A record without its config is corrupt to the gate (and to resume), so the gate exits 2; the
    leaderboard, which reads no provenance, still counts it."""
    import json

    baseline(tmp_path)
    new = results(tmp_path)
    victim = sorted(new.glob("*.json"))[0]
    blob = json.loads(victim.read_text())
    del blob["config"]
    victim.write_text(json.dumps(blob))
    assert gate(tmp_path) == 2
    assert f"corrupt record(s): {victim}" in capsys.readouterr().err
    out = tmp_path / "board.md"
    assert main(["report", "--results", str(new), "--out", str(out), "--no-plots", "--no-export"]) == 0
    assert "from 6 run records" in out.read_text()


ENV = {"packages": {"torch": "2.14.1"}, "python": "3.11.7", "cpu_model": "Some CPU @ 2.0GHz", "torch_threads": 1,
       "device": "cpu", "device_name": "cpu"}


def exact_pair(tmp_path, shift=0.0, base_env=None, new_env=None):
    base = [rec(lab, s, a) for lab, accs in BASE_ACC.items() for s, a in enumerate(accs)]
    new = [rec(lab, s, a + (shift if (lab, s) == ("scratch", 1) else 0.0))
           for lab, accs in BASE_ACC.items() for s, a in enumerate(accs)]
    write(tmp_path / "baseline", [r.model_copy(update={"env": {**ENV, **(base_env or {})}}) for r in base])
    write(tmp_path / "results", [r.model_copy(update={"env": {**ENV, **(new_env or {})}}) for r in new])


def test_exact_mode_fails_on_any_difference_in_the_same_environment(tmp_path, capsys):
    exact_pair(tmp_path, shift=1e-9)  # far inside the statistical gate's allowance
    assert gate(tmp_path) == 1
    out = capsys.readouterr().out
    assert "Exact mode: 6 run(s) made in the baseline's environment checked bit for bit" in out
    assert "p.scratch.s1-x" in out and "accuracy" in out and "macro_f1" in out
    assert "FAIL: 0 regression(s)" in out and "2 metric(s) not reproduced bit for bit in 6 run(s)" in out
    assert gate(tmp_path, "--exact", "off") == 0  # the statistical gate alone lets it pass


def test_exact_mode_passes_identical_runs_and_says_what_it_checked(tmp_path, capsys):
    exact_pair(tmp_path)
    assert gate(tmp_path) == 0
    assert "0 metric(s) not reproduced bit for bit in 6 run(s)" in capsys.readouterr().out


@pytest.mark.parametrize("new_env", [{"cpu_model": "Another CPU"}, {"torch_threads": 2},
                                     {"packages": {"torch": "2.15.0"}}, {"device": "cuda:0"}])
def test_runs_made_elsewhere_go_to_the_statistical_gate_only(tmp_path, capsys, new_env):
    base_env = {"device": "cuda:0"} if new_env.get("device") else None  # CUDA without deterministic algorithms
    exact_pair(tmp_path, shift=1e-9, base_env=base_env, new_env=new_env)
    assert gate(tmp_path) == 0
    assert "0 run(s) made in the baseline's environment checked bit for bit; 6 made elsewhere" in capsys.readouterr().out


def test_another_instruction_set_is_another_environment_when_both_records_say_which(tmp_path, capsys):
    """A VM names several CPU generations alike ("AMD EPYC"); the vector instruction set torch's
    kernels use (AVX2 vs AVX-512) changes the bits, so records carry it and exact mode compares it."""
    exact_pair(tmp_path, shift=1e-9, base_env={"cpu_capability": "AVX512"}, new_env={"cpu_capability": "AVX2"})
    assert gate(tmp_path) == 0
    assert "0 run(s) made in the baseline's environment checked bit for bit; 6 made elsewhere" in capsys.readouterr().out
    exact_pair(tmp_path, shift=1e-9, base_env={"cpu_capability": "AVX2"}, new_env={"cpu_capability": "AVX2"})
    assert gate(tmp_path) == 1  # the same instruction set: any difference fails


def test_a_baseline_made_before_records_carried_the_instruction_set_is_still_checked_bit_for_bit(tmp_path, capsys):
    exact_pair(tmp_path, shift=1e-9, new_env={"cpu_capability": "AVX512"})  # the baseline lacks the key
    assert gate(tmp_path) == 1
    assert "2 metric(s) not reproduced bit for bit in 6 run(s)" in capsys.readouterr().out


def test_records_carry_what_exact_mode_reads():
    import torch

    from harness.report.compare import environment
    from harness.run.cost import environment as run_environment

    env = run_environment(torch.device("cpu"))
    assert env["cpu_model"] and env["packages"]["torch"] and env["torch_threads"] >= 1
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    made_here = rec("scratch", 0, 0.5).model_copy(update={"env": env})
    assert environment(made_here) is not None  # a record made now can be checked bit for bit
    assert environment(rec("scratch", 0, 0.5)) is None  # one with no environment never is


# --- the paired test at its smallest size, and the gate's own threshold against scipy -------------


@pytest.mark.parametrize(("base", "new", "status"), [
    # every seed 3 points lower: paired (sd 0), the threshold is the tolerance → regression, where
    # the k·σ fallback (2 · 0.0283 = 0.057) would let it pass
    ((0.80, 0.84), (0.77, 0.81), "regression"),
    # per-seed changes that disagree (−7, +3): paired, t₀.₉₇₅(1) · sd/√2 = 0.64 → ok, where the k·σ
    # fallback on a noiseless baseline (the 1-point tolerance) would call the 2-point mean drop
    ((0.80, 0.80), (0.73, 0.83), "ok"),
])
def test_two_shared_seeds_are_decided_by_the_paired_test(tmp_path, capsys, base, new, status):
    write(tmp_path / "baseline", [rec("full_finetune", s, a) for s, a in enumerate(base)])
    write(tmp_path / "results", [rec("full_finetune", s, a) for s, a in enumerate(new)])
    cmp = compare_rows(aggregate([rec("full_finetune", s, a) for s, a in enumerate(base)]),
                       aggregate([rec("full_finetune", s, a) for s, a in enumerate(new)]),
                       GateOptions(metrics=("accuracy",), max_slowdown=None))
    (change,) = cmp.changes
    assert (change.method, change.seeds, change.status) == ("paired", 2, status)
    assert gate(tmp_path) == (1 if status == "regression" else 0)  # macro_f1 moves with accuracy
    line = next(x for x in capsys.readouterr().out.splitlines() if "full_finetune  accuracy" in x)
    assert "paired, 2 seeds" in line


def test_the_gate_threshold_calls_a_change_exactly_when_the_paired_t_test_does():
    """``gate_threshold`` (what compare_rows decides by) with no tolerance: |mean d| beyond the
    threshold ⇔ p < 0.05 in scipy's paired t-test, from 2 seeds up, near the decision."""
    from harness.report.compare import gate_threshold
    from harness.report.stats import summarize
    from tests.unit.test_stats import counted

    stats = pytest.importorskip("scipy.stats")
    sizes = set()

    def check(sample) -> bool:
        new_values, base_values = sample
        base, new = dict(enumerate(base_values)), dict(enumerate(new_values))
        threshold, method, paired, shared = gate_threshold(base, new, summarize(base_values),
                                                           GateOptions(tolerance=0.0))
        assert (method, shared) == ("paired", len(base))
        assert paired == pytest.approx(sum(new_values) / len(new) - sum(base_values) / len(base), abs=1e-9)
        p = stats.ttest_rel(new_values, base_values).pvalue
        if abs(p - 0.05) < 0.002:
            return False  # t₀.₉₇₅'s table has 3 decimals: the razor's edge may go either way
        assert (abs(paired) > threshold) == (p < 0.05), (len(base), p, paired, threshold)
        sizes.add(len(base))
        return True

    counted(150, check)
    assert 2 in sizes  # the smallest paired case is among them
