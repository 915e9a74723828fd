"""Seconds from launching `harness run` until its first line on stderr (the plan: "N runs planned …
→ results/…"), as a log sees it. With ``--against CHECKOUT`` the same is timed for another checkout
of the harness (an older commit, say), interleaved with this one's so both see the same load, and
the ratio is printed.

    python benchmarks/bench_first_line.py --repeat 5
    git worktree add /tmp/old <commit> && python benchmarks/bench_first_line.py --against /tmp/old

Each launch gets a fresh results directory and cache, and is killed after its first line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_line_s(checkout: Path, suite: str) -> tuple[float, str]:
    work = Path(tempfile.mkdtemp(prefix="harness-first-line-"))
    env = dict(os.environ, PYTHONPATH=str(checkout), HARNESS_CACHE=str(work / "cache"))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", suite, "--smoke", "--results", str(work / "r")],
                            cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]  # stderr=PIPE
        return time.perf_counter() - start, line.strip()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="suites/quickstart.yaml")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--against", type=Path, help="another checkout of the harness, timed in turn with this one")
    args = ap.parse_args()
    checkouts = [ROOT] + ([args.against.resolve()] if args.against else [])
    times: dict[Path, list[float]] = {c: [] for c in checkouts}
    for _ in range(args.repeat):
        for c in checkouts:
            seconds, line = first_line_s(c, args.suite)
            if "planned" not in line:
                raise SystemExit(f"{c}: the first line is not the plan: {line!r}")
            times[c].append(seconds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for c, v in times.items():
        print(f"{c}: first line after min {min(v):.2f} / median {statistics.median(v):.2f} / max {max(v):.2f} s "
              f"({len(v)} launches)")
    if args.against:
        ratio = statistics.median(times[args.against.resolve()]) / statistics.median(times[ROOT])
        print(f"median ratio (other / this): {ratio:.1f}x; 1-min load average at the end {load:.2f} "
              f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
