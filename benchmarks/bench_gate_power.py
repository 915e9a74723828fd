"""The nightly gate's power: realistic bugs planted one at a time in a copy of the code, the nightly
suite run on each copy, and the gate's verdict recorded; clean reruns for false alarms.

Each bug is one textual patch of one file (the patch must match exactly once, or the script stops:
a catalogue that silently stopped applying would measure nothing). A copy of ``harness/`` with the
patch goes first on ``PYTHONPATH`` (checked: the run imports the copy), with its own empty feature
cache, so no run reads another's. The baseline is, by default, a clean run made first on this
machine, so both verdicts apply:

* **statistical** — ``harness compare --exact off``: the seed-paired gate that other machines get;
* **exact** — ``harness compare`` (exact mode): a run made in the baseline's environment must give
  every metric bit for bit.

``--baseline DIR`` compares with committed records instead (exact mode then applies only if they
were made in this environment). Prints a table of caught / planted and false alarms / clean runs
for each verdict, and writes the rows as JSON (``--out``).

    python benchmarks/bench_gate_power.py                       # ≈ 14 nightly runs: about 30 min on 2 cores
    python benchmarks/bench_gate_power.py --only eval-train-mode --clean 1      # one bug, one clean rerun
    python benchmarks/bench_gate_power.py --baseline results/baselines/nightly --perturbed 1   # the full measure
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    area: str
    file: str  # relative to the repository root
    old: str
    new: str
    what: str


BUGS = [
    Bug("eval-train-mode", "evaluation mode", "harness/run/loop.py",
        "    model.eval()\n    try:\n        yield",
        "    model.train()\n    try:\n        yield",
        "evaluation runs the model in train mode (BatchNorm batch statistics, dropout on)"),
    Bug("optimizer-lr", "optimizer", "harness/strategies/base.py",
        "return decay_groups(named, self.train.lr, self.train.weight_decay)",
        "return decay_groups(named, self.train.lr * 0.1, self.train.weight_decay)",
        "the optimizer's parameter groups get a tenth of the configured learning rate"),
    Bug("schedule-ends-early", "schedule", "harness/run/loop.py",
        "0.5 * (1 + math.cos(math.pi * progress))",
        "0.5 * (1 + math.cos(math.pi * min(1.0, 4 * progress)))",
        "the cosine schedule reaches zero a quarter of the way through training"),
    Bug("clip-too-tight", "optimizer", "harness/run/loop.py",
        "torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)",
        "torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm * 1e-3)",
        "gradients clipped to a thousandth of the configured norm"),
    Bug("normalise-with-mean", "data pipeline", "harness/targets/vision/digits.py",
        "std = torch.tensor(spec.std).view(1, -1, 1, 1)",
        "std = torch.tensor(spec.mean).view(1, -1, 1, 1)",
        "images divided by the channel means instead of the standard deviations"),
    Bug("macro-f1-counts-fn-twice", "metric computation", "harness/metrics.py",
        "f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)",
        "f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + 2 * fn)",
        "macro-F1 counts each false negative twice"),
    Bug("seed-ignored", "seeding", "harness/run/seed.py",
        "    torch.manual_seed(seed)\n",
        "    torch.manual_seed(0)\n",
        "torch's generator seeded with 0 whatever the run's seed"),
    Bug("probe-one-c", "model selection", "harness/run/logistic.py",
        "for c in sorted(grid):",
        "for c in sorted(grid)[:1]:",
        "the L-BFGS probe tries only the smallest C of its grid"),
    Bug("frozen-bn-trains", "frozen means frozen", "harness/run/loop.py",
        "        if not own or not all(p.requires_grad for p in own):\n            module.eval()",
        "        if not own or not all(p.requires_grad for p in own):\n            module.train()",
        "BatchNorm layers of frozen blocks re-estimate their statistics while training"),
    Bug("head-zero-init", "initialisation", "harness/sources/nets.py",
        "        head = nn.Linear(self.feature_dim, num_labels)\n",
        "        head = nn.Linear(self.feature_dim, num_labels)\n        nn.init.zeros_(head.weight)\n",
        "the new task head starts from zero weights"),
    Bug("label-on-last-subword", "label alignment", "harness/targets/tokens.py",
        "labels.append(-100 if wid is None or wid == prev else label_ids[tags[wid]])",
        "labels.append(-100 if wid is None or (wid == prev and False) else label_ids[tags[wid]])",
        "every sub-word of a word carries its label, not only the first"),
    Bug("truncate-to-16", "truncation", "harness/targets/tokens.py",
        "enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)",
        "enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=min(16, max_length))",
        "sentences truncated to 16 sub-words whatever max_length says"),
]


@dataclass
class Outcome:
    name: str
    area: str
    what: str
    run_s: float = 0.0
    run_rc: int = 0
    statistical_rc: int | None = None
    exact_rc: int | None = None
    statistical: str = ""
    exact: str = ""
    notes: list[str] = field(default_factory=list)
    # per cell and metric: the statistical gate's paired change and the smallest change it calls
    # (its resolution against this run), e.g. {"minilm-wnut16/full_finetune/f1": [-0.9, 6.4, 3]}
    cells: dict[str, list[float]] = field(default_factory=dict)


def code_copy(dest: Path, bug: Bug | None) -> Path:
    shutil.copytree(ROOT / "harness", dest / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    if bug is not None:
        path = dest / bug.file
        text = path.read_text()
        if text.count(bug.old) != 1:
            raise SystemExit(f"bug {bug.name}: its patch matches {text.count(bug.old)} times in {bug.file}, not once; "
                             "update the catalogue")
        path.write_text(text.replace(bug.old, bug.new))
    return dest


# Another machine, simulated on this one: torch's CPU kernels on AVX2 instead of AVX-512 (a VM can name
# both "AMD EPYC"), and one worker of 2 threads instead of two of one. Two threads alone change the
# convolutions' sums but leave MiniLM's matrix products bit for bit the same; the instruction set
# changes both.
PERTURBED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
PERTURBED_ARGS = ["--workers", "1", "--threads", "2"]


def run_suite(code: Path | None, suite: Path, results: Path, cache: Path, executor: list[str],
              extra_env: dict[str, str] | None = None) -> tuple[int, float, str]:
    env = {**os.environ, "HARNESS_CACHE": str(cache), "OMP_NUM_THREADS": "1", **(extra_env or {})}
    cwd = ROOT  # `python -m` puts the working directory first on sys.path: the copy's, for a planted bug
    if code is not None:
        cwd = code
        env["PYTHONPATH"] = str(code) + os.pathsep + env.get("PYTHONPATH", "")
        where = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], env=env,
                               capture_output=True, text=True, check=True, cwd=cwd).stdout.strip()
        if not where.startswith(str(code)):
            raise SystemExit(f"the copy is not what runs: harness imports from {where}")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(suite), "--results", str(results), "--no-progress",
                          *executor], env=env, capture_output=True, text=True, cwd=cwd)
    return out.returncode, time.perf_counter() - t0, out.stdout[-400:] + out.stderr[-400:]


def gate(baseline: Path, results: Path, exact: bool) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-m", "harness", "compare", "--baseline", str(baseline), "--results",
                          str(results), "--cost-gate", "off", "--exact", "auto" if exact else "off"],
                         capture_output=True, text=True, cwd=ROOT)
    lines = [x for x in (out.stdout + out.stderr).splitlines() if x.startswith(("PASS", "FAIL", "error"))]
    return out.returncode, lines[-1] if lines else (out.stdout + out.stderr)[-300:]


def cells(baseline: Path, results: Path) -> dict[str, list[float]]:
    """What the statistical gate saw per cell: [paired change, detectable change, shared seeds], in
    points (the metric × 100), from the same comparison `harness compare --exact off` makes."""
    from harness.errors import HarnessError
    from harness.report.compare import GateOptions, compare_dirs

    try:
        cmp = compare_dirs(baseline, results, GateOptions(max_slowdown=None), exact=False)
    except HarnessError as e:  # no records, or corrupt ones: the verdicts say so; the bench goes on
        print(f"  (no per-cell figures for {results}: {e})", flush=True)
        return {}
    return {f"{c.pair}/{c.label}/{c.metric}": [round(100 * c.delta, 2), round(100 * c.threshold, 2), c.seeds]
            for c in cmp.changes if c.base is not None and c.new is not None}


RERUNS = ("clean rerun", "perturbed rerun", "given records")


def resolution(rows: list[Outcome]) -> None:
    """Per cell (its first metric), the statistical gate's detectable change against each clean,
    perturbed or given rerun: its resolution where the environment differs (a rerun in the
    baseline's own environment reproduces every bit, and shows the tolerance)."""
    reruns = [r for r in rows if r.area in RERUNS and r.cells]
    if not reruns:
        return
    firsts: dict[str, str] = {}
    for r in reruns:
        for key in r.cells:
            firsts.setdefault(key.rsplit("/", 1)[0], key)
    print(f"\n{'detectable change (pts), per rerun':<42} " + " ".join(f"{r.name:>14}" for r in reruns))
    for key in firsts.values():
        vals = [r.cells.get(key) for r in reruns]
        print(f"{key:<42} " + " ".join(f"{'-' if v is None else f'±{v[1]:.2f} (n={v[2]})':>14}" for v in vals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default=str(ROOT / "suites" / "nightly.yaml"))
    ap.add_argument("--baseline", help="committed baseline records (default: a clean run made first, here)")
    ap.add_argument("--clean", type=int, default=5, help="clean reruns for false alarms (default 5)")
    ap.add_argument("--perturbed", type=int, default=0,
                    help="clean reruns in another numeric environment (AVX2 kernels instead of AVX-512, one worker "
                    "of 2 threads: other float sums, as another machine gives): the statistical gate's false alarms "
                    "and resolution under real numeric noise")
    ap.add_argument("--only", nargs="*", help="only these bugs (names)")
    ap.add_argument("--executor", nargs="*", default=["--executor", "pool", "--workers", "2"],
                    help="arguments for `harness run` (default: a pool of 2)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--results", nargs="*", default=[], metavar="DIR",
                    help="judge these existing record directories as reruns made elsewhere (e.g. the suite run on "
                    "another machine), besides or instead of new runs: no run is made for them")
    args = ap.parse_args()
    bugs = [b for b in BUGS if not args.only or b.name in args.only]
    suite = Path(args.suite).resolve()
    suite_name = next(x.split(":", 1)[1].strip() for x in suite.read_text().splitlines() if x.startswith("suite:"))
    rows: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="gate-power-") as tmp:
        work = Path(tmp)
        for bug in bugs:  # every patch applies before an hour of runs starts
            code_copy(work / "check" / bug.name, bug)
        if args.baseline:
            baseline = Path(args.baseline).resolve()
        else:
            rc, secs, log = run_suite(None, suite, work / "baseline", work / "baseline-cache", args.executor)
            if rc != 0:
                raise SystemExit(f"the clean baseline run failed (exit {rc}): {log}")
            baseline = work / "baseline" / suite_name
            print(f"baseline: a clean run here, {secs:.0f} s", flush=True)
        plan = [(b.name, b, []) for b in bugs] + [(f"clean-{i + 1}", None, []) for i in range(args.clean)] + \
            [(f"perturbed-{i + 1}", None, PERTURBED_ARGS) for i in range(args.perturbed)]
        for name, bug, extra in plan:
            code = code_copy(work / "code" / name, bug) if bug is not None else None
            results = work / "results" / name
            rc, secs, log = run_suite(code, suite, results, work / "cache" / name, [*args.executor, *extra],
                                      PERTURBED_ENV if extra else None)
            area = bug.area if bug else "clean rerun" if not extra else "perturbed rerun"
            what = bug.what if bug else "no change" if not extra else "no change, AVX2 kernels, 1 worker × 2 threads"
            row = Outcome(name, area, what, round(secs, 1), rc)
            if rc not in (0, 1):
                row.notes.append(f"harness run exit {rc}: {log[-200:]}")
            if (results / suite_name).is_dir():
                row.statistical_rc, row.statistical = gate(baseline, results / suite_name, exact=False)
                row.exact_rc, row.exact = gate(baseline, results / suite_name, exact=True)
                row.cells = cells(baseline, results / suite_name)
            rows.append(row)
            print(f"{name:<26} run {secs:5.0f} s (exit {rc})  statistical {verdict(row.statistical_rc, row.statistical)}  "
                  f"exact {verdict(row.exact_rc, row.exact)}", flush=True)
        for i, given in enumerate(args.results):
            given = Path(given).resolve()
            given = given / suite_name if (given / suite_name).is_dir() else given
            row = Outcome(f"given-{i + 1}", "given records", f"records in {given}")
            row.statistical_rc, row.statistical = gate(baseline, given, exact=False)
            row.exact_rc, row.exact = gate(baseline, given, exact=True)
            row.cells = cells(baseline, given)
            rows.append(row)
            print(f"{row.name:<26} statistical {verdict(row.statistical_rc, row.statistical)}  "
                  f"exact {verdict(row.exact_rc, row.exact)}  ({given})", flush=True)
    print()
    print(f"{'bug':<26} {'area':<20} {'statistical':<12} {'exact':<8} what")
    for r in rows:
        print(f"{r.name:<26} {r.area:<20} {verdict(r.statistical_rc, r.statistical):<12} "
              f"{verdict(r.exact_rc, r.exact):<8} {r.what}")
    for line in summary(tally(rows)):
        print(line)
    resolution(rows)
    if args.out:
        Path(args.out).write_text(json.dumps([asdict(r) for r in rows], indent=1))


CAUGHT, FLAGGED, PASS = "CAUGHT", "FLAGGED", "pass"
ALARMS = (CAUGHT, FLAGGED)  # what a reviewer is made to look at: a failure, or a pass with a warning
KINDS = ("statistical", "exact")


def verdict(rc: int | None, line: str = "") -> str:
    """One gate's verdict from ``harness compare``'s exit code and its last verdict line.

    CAUGHT: the gate failed (exit 1, a regression); FLAGGED: it passed with a warning to review an
    improvement nobody explained (never a silent pass); pass: silent; "no records": the run left
    nothing to judge; "error (exit N)": the gate could not judge (2 = bad input), which is neither
    a catch nor a pass."""
    if rc is None:
        return "no records"
    if rc == 0:
        return FLAGGED if "WARNING:" in line else PASS
    return CAUGHT if rc == 1 else f"error (exit {rc})"


@dataclass
class Count:
    """One group of rows under one gate: ``alarms`` are the gate's failures (CAUGHT) for planted
    bugs, and its failures or warnings (CAUGHT or FLAGGED) for reruns that changed nothing."""

    rows: int = 0
    alarms: int = 0
    flagged: int = 0
    errors: int = 0


def tally(rows: list[Outcome]) -> dict[tuple[str, str], Count]:
    """(group, gate) → its Count; groups: "planted" and each kind of rerun (RERUNS), gates: KINDS.

    Every kind of rerun is judged by the same rule: a FLAGGED pass is an alarm, as a failure is. A
    verdict that is neither an alarm nor a pass (the gate errored, or nothing was recorded) is an
    error, counted apart: never a catch, never a clean pass."""
    counts: dict[tuple[str, str], Count] = {}
    for r in rows:
        group = r.area if r.area in RERUNS else "planted"
        for kind in KINDS:
            v = verdict(getattr(r, f"{kind}_rc"), getattr(r, kind))
            c = counts.setdefault((group, kind), Count())
            c.rows += 1
            c.flagged += v == FLAGGED
            c.alarms += v == CAUGHT if group == "planted" else v in ALARMS
            c.errors += v not in (*ALARMS, PASS)
    return counts


def summary(counts: dict[tuple[str, str], Count]) -> list[str]:
    """The lines the benchmark ends with: per gate, planted bugs caught, then false alarms per kind of rerun."""
    lines = []
    for (group, kind), c in counts.items():
        errors = f"; {c.errors} error(s): the gate could not judge" if c.errors else ""
        if group == "planted":
            lines.append(f"{kind}: caught {c.alarms}/{c.rows} planted bugs (+{c.flagged} passed with a warning to "
                         f"review an unexplained improvement){errors}")
        else:
            lines.append(f"{kind}, {group}: false alarms {c.alarms}/{c.rows} ({c.flagged} of them a pass with a "
                         f"warning){errors}")
    return lines


if __name__ == "__main__":
    main()
