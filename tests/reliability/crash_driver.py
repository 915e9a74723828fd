"""Kill a real ``harness run`` over and over; print what happened as JSON (used by test_crash_resume).

    python crash_driver.py SUITE RESULTS [--kills 24] [--exec-kills 1] [--seed 0] [--first-complete GLOB]
                           [--write-pause-s 0.05]

Each round starts ``harness run SUITE --results RESULTS`` in a child process and SIGKILLs it,
cycling through kill points:

- ``random``: after a random delay (any phase: loading, training, feature extraction, writing);
- ``mid-record-write`` / ``mid-any-write``: the moment a new temp file appears in the suite's
  record directory / anywhere under RESULTS (feature cache included; sometimes the second one,
  after a whole file). ``--write-pause-s`` (``records.mid_write_hook``, set here and inherited by
  the forked children) holds half the bytes on disk for a while, so the kill lands inside
  ``atomic_write_bytes``;
- ``exec``: a freshly exec'd ``python -m harness run`` killed at a random time (start-up included).

Most children are forked from this process after the harness is imported, so a round costs
a fraction of a second instead of a Python + torch start-up; the child then runs the real CLI.
After every kill the driver checks the invariants the test asserts at the end too: no corrupt
record, and no ok record written before the kill was rewritten by a later child.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

T0 = time.monotonic()

from harness import cli  # noqa: E402 - timed from before the imports
from harness import records as record_io  # noqa: E402
from harness.plan import expand  # noqa: E402
from harness.records import TMP_SUFFIX, scan  # noqa: E402
from harness.run.cost import environment  # noqa: E402
from harness.suite import load_suite  # noqa: E402

WARM_IMPORTS = ("torch._dynamo", "torch.utils.flop_counter", "sklearn.datasets")
WARM_IMPORTS_TEXT = ("transformers", "transformers.models.bert.modeling_bert", "tokenizers", "seqeval.metrics")


def temp_files(results: Path) -> set[str]:
    return {str(p.relative_to(results)) for p in results.rglob(f"*{TMP_SUFFIX}")}


def ok_fingerprints(results: Path) -> dict[str, tuple]:
    """run_id → (inode, mtime_ns, started_at) of every ok record: a rewrite changes all three."""
    records, _ = scan(results)
    out = {}
    for r in records:
        if r.status == "ok":
            st = (results / r.suite / f"{r.run_id}.json").stat()
            out[r.run_id] = (st.st_ino, st.st_mtime_ns, r.started_at)
    return out


def fork_run(argv: list[str]) -> int:
    pid = os.fork()
    if pid == 0:  # child: the real CLI, output discarded
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            code = cli.main(argv)
        except BaseException:  # noqa: BLE001 - the child must never return into the driver
            code = 99
        os._exit(code if isinstance(code, int) else 98)
    return pid


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("suite", type=Path)
    p.add_argument("results", type=Path)
    p.add_argument("--kills", type=int, default=24, help="kill rounds in all")
    p.add_argument("--exec-kills", type=int, default=1, help="of which exec'd `python -m harness run`")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-complete", metavar="GLOB", help="before the kills, let `--only GLOB` finish")
    p.add_argument("--write-pause-s", type=float, default=0.0, help="forked children: every atomic write stops "
                   "this long with half its bytes on disk")
    return p.parse_args()


def wait_for_write(pid: int, results: Path, before: set[str], nth: int, under: str = "",
                   timeout_s: float = 30.0) -> bool:
    """Poll until the ``nth`` new temp file under ``results/under`` appears (True) or the child exits (False)."""
    seen, deadline = set(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if results.exists():
            seen |= {t for t in temp_files(results) - before if t.startswith(under)}
        if len(seen) >= nth:
            return True
        if exited(pid):
            return False
        time.sleep(0.002)
    return True


def exited(pid: int) -> bool:
    """Whether the child has exited; reaps it. A child reaped earlier (e.g. while waiting for a
    write) has exited too: ``waitpid`` then raises ChildProcessError instead of answering."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def main() -> None:
    args = parse_args()
    results, rng = args.results, random.Random(args.seed)
    argv = ["run", str(args.suite), "--results", str(results), "--no-progress"]
    if args.write_pause_s:  # inherited by every forked child (not by an exec'd one)
        record_io.mid_write_hook = lambda path: time.sleep(args.write_pause_s)
    runs = expand(load_suite(args.suite))  # imports every registry module before forking
    text = any(r.target.get("task") == "token-classification" for r in runs)
    for module in WARM_IMPORTS + (WARM_IMPORTS_TEXT if text else ()):
        importlib.import_module(module)  # what a first run imports lazily (seconds each); no torch op runs here
    environment(torch.device("cpu"))  # versions, git sha (subprocesses): cached once per process, as in a real run
    setup_s = time.monotonic() - T0
    if args.first_complete:  # some ok records exist from the start: no later kill may touch them
        pid = fork_run([*argv, "--only", args.first_complete])
        os.waitpid(pid, 0)
    suite_name = runs[0].suite
    # Rounds go on until `kills` of them killed a live process: on a fast machine a child may
    # finish on its own before its kill, and such a round does not count (capped at 4× rounds).
    kinds = ("random", "mid-record-write", "random", "mid-any-write")
    rounds = ["exec"] * args.exec_kills + [kinds[i % 4] for i in range(4 * args.kills)]
    log, seen_ok, violations = [], ok_fingerprints(results) if results.exists() else {}, []
    for round_no, kind in enumerate(rounds):
        if sum(r["killed"] for r in log) >= args.kills:
            break
        before_tmp = temp_files(results) if results.exists() else set()
        t0 = time.monotonic()
        if kind == "exec":
            proc = subprocess.Popen([sys.executable, "-m", "harness", *argv], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            pid = proc.pid
            time.sleep(rng.uniform(0.5, 5.0))
        else:
            pid = fork_run(argv)
            if kind == "random":
                time.sleep(rng.uniform(0.02, 0.4))
            elif kind == "mid-record-write":
                wait_for_write(pid, results, before_tmp, nth=1, under=f"{suite_name}/")
            else:  # any file (feature cache included); sometimes the second, after one whole file
                wait_for_write(pid, results, before_tmp, nth=rng.choice((1, 1, 2)))
        done = exited(pid)
        if not done:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if kind == "exec":
            proc.returncode = -9  # reaped above
        left = sorted(temp_files(results) - before_tmp) if results.exists() else []
        records, corrupt = scan(results) if results.exists() else ([], [])
        fingerprints = ok_fingerprints(results) if results.exists() else {}
        for run_id, fp in seen_ok.items():
            if fingerprints.get(run_id) != fp:
                violations.append(f"round {round_no}: ok record {run_id} was rewritten or lost")
        seen_ok.update(fingerprints)
        if corrupt:
            violations.append(f"round {round_no}: corrupt records {[str(p) for p in corrupt]}")
        log.append({"round": round_no, "kind": kind, "killed": not done,
                    "after_s": round(time.monotonic() - t0, 3), "temp_left": left,
                    "records": len(records), "ok": len(fingerprints)})
    print(json.dumps({"runs_in_plan": len(runs), "setup_s": round(setup_s, 1), "log": log,
                      "violations": violations, "ok_fingerprints": {k: list(v) for k, v in seen_ok.items()}}))


if __name__ == "__main__":
    main()
