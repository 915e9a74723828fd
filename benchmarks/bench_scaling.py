"""Scale-out figures for docs/scaling.md, each a ratio of two things measured in one run.

1. ``makespan``: a simulated 8-GPU Ray cluster (``ray.init(num_gpus=8)``, logical GPUs) runs a
   plan graph of 64 runs of known, varied durations with dependencies (16 teachers, each read by
   3 students) through the real driver (``run_plan``: lock, graph order, records written). The
   ideal for the graph is its lower bound ``max(critical path, total work / 8)``; target: the
   makespan is at most 1.1 × that.
   Ray is warmed first by an untimed plan of 8 runs (its 8 worker processes start).
2. ``overhead``: a chain of runs (each depends on the one before, so one runs at a time) through
   ``--executor local`` and through Ray; per-run overhead = (Ray wall − local wall) / runs;
   target ≤ 1 s. Each side's wall spans its ``run_plan`` (executor construction outside it). In
   every mode (``--only overhead`` too) both executors are first warmed alike, untimed, by the same
   2-run chain (Ray's first task pays its worker's start); then local is timed, then Ray.
3. ``cache``: the per-process target cache. Runs of one offline pair executed in one process with
   the cache emptied before each run (every run loads and checks its target, as before the cache)
   and kept (as a pool worker or a Ray worker does); time per run (wall, around ``execute``), and
   whether the records agree. One untimed run first pays imports and first use for both; then the
   two sides' runs are interleaved, run by run, the side going first alternating (the kept cache is
   set aside while the other side runs with an empty one).

    python benchmarks/bench_scaling.py            # all three
    python benchmarks/bench_scaling.py --only makespan,overhead
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.executors.base import failed_record, run_plan  # noqa: E402
from harness.executors.job import Job  # noqa: E402
from harness.executors.local import LocalExecutor  # noqa: E402
from harness.plan import RunSpec  # noqa: E402
from harness.records import now  # noqa: E402
from harness.run.execute import ExecOptions  # noqa: E402

GPUS = 8


def spec(run_id: str, seconds: float, depends_on: tuple[str, ...] = ()) -> RunSpec:
    return RunSpec(run_id=run_id, suite="scaling", pair="sim", strategy="sleep", label=run_id.split(".")[0], seed=0,
                   source={"model": "sim/none"}, target={"dataset": "sim/none", "task": "image-classification"},
                   train={"device": "auto"}, params={"seconds": seconds, "run": run_id},  # one computation each
                   depends_on=depends_on)


def sleep_run(job: Job, options: ExecOptions):
    """A run that takes exactly its ``seconds`` and records it."""
    started = now("microseconds")
    t0 = time.perf_counter()
    time.sleep(job.spec.params["seconds"])
    rec = failed_record(job.spec, "")
    return rec.model_copy(update={"status": "ok", "error": None, "started_at": started,
                                  "finished_at": now("microseconds"), "cost": {"wall_s": time.perf_counter() - t0}})


def graph(seed: int = 0) -> list[RunSpec]:
    """16 teachers of 2-6 s, each read by 3 students of 0.5-2.5 s: 64 runs."""
    import random

    rng = random.Random(seed)
    runs = []
    for t in range(16):
        teacher = spec(f"teacher{t}.s0", round(rng.uniform(2.0, 6.0), 2))
        runs.append(teacher)
        runs += [spec(f"student{t}x{k}.s0", round(rng.uniform(0.5, 2.5), 2), (teacher.run_id,)) for k in range(3)]
    return runs


def ideal(runs: list[RunSpec], slots: int) -> tuple[float, float, float]:
    """(lower bound, critical path, total work / slots)."""
    length = {r.run_id: r.params["seconds"] for r in runs}
    finish: dict[str, float] = {}
    for r in runs:  # plan order: dependencies first
        finish[r.run_id] = length[r.run_id] + max((finish[d] for d in r.depends_on), default=0.0)
    critical, work = max(finish.values()), sum(length.values()) / slots
    return max(critical, work), critical, work


def bench_makespan(ray) -> dict:
    from harness.executors.ray_executor import RayExecutor

    runs = graph()
    with tempfile.TemporaryDirectory() as tmp:
        options = ExecOptions(cache_dir=Path(tmp) / "cache")
        warm = [spec(f"warm{i}.s0", 0.5) for i in range(GPUS)]  # Ray starts its 8 worker processes
        run_plan(warm, Path(tmp) / "warm", options, executor=RayExecutor(options, run=sleep_run))
        t0 = time.perf_counter()
        done = run_plan(runs, Path(tmp) / "results", options, executor=RayExecutor(options, run=sleep_run)).done
        makespan = time.perf_counter() - t0
    assert len(done) == 64 and all(r.status == "ok" for r in done)
    bound, critical, work = ideal(runs, GPUS)
    return {"runs": len(runs), "makespan_s": round(makespan, 2), "ideal_s": round(bound, 2),
            "critical_path_s": round(critical, 2), "work_per_gpu_s": round(work, 2),
            "ratio": round(makespan / bound, 3), "target": "<= 1.1"}


def bench_overhead(ray, n: int = 16, seconds: float = 0.2) -> dict:
    from harness.executors.ray_executor import RayExecutor

    chain = [spec("c0.s0", seconds)]
    for i in range(1, n):
        chain.append(spec(f"c{i}.s0", seconds, (chain[-1].run_id,)))
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        options = ExecOptions(cache_dir=Path(tmp) / "cache")

        def executor(name: str):
            return LocalExecutor(options, run=sleep_run) if name == "local" else RayExecutor(options, run=sleep_run)

        # both warmed alike, untimed, whatever ran before (Ray's first task pays its worker's start)
        warm = [spec("w0.s0", seconds / 4)]
        warm.append(spec("w1.s0", seconds / 4, (warm[0].run_id,)))
        for name in ("local", "ray"):
            run_plan(warm, Path(tmp) / f"warm-{name}", options, executor=executor(name))
        for name in ("local", "ray"):
            ex = executor(name)
            t0 = time.perf_counter()
            done = run_plan(chain, Path(tmp) / name, options, executor=ex).done
            walls[name] = time.perf_counter() - t0
            assert len(done) == n and all(r.status == "ok" for r in done)
    per_run = (walls["ray"] - walls["local"]) / n
    return {"runs": n, "run_s": seconds, "local_wall_s": round(walls["local"], 3), "ray_wall_s": round(walls["ray"], 3),
            "overhead_per_run_s": round(per_run, 3), "target": "<= 1.0"}


def bench_cache(pair: str, repeat: int = 4) -> dict:
    """Smoke-budget runs of a quickstart pair (loading is a real share of a short run): digits'
    fine-tuning trials, WNUT-16's fine-tuning finals."""
    import torch

    from harness.plan import expand
    from harness.run import execute as ex
    from harness.suite import load_suite

    torch.set_num_threads(1)
    suite = load_suite(Path(__file__).resolve().parents[1] / "suites/quickstart.yaml")
    plan = [r for r in expand(suite, smoke=True) if r.pair == pair and r.strategy == "full_finetune" and r.resolved]
    plan = (plan * repeat)[:repeat]
    out: dict[str, tuple[list, list]] = {"no cache": ([], []), "cache": ([], [])}
    kept: OrderedDict = OrderedDict()  # the "cache" side's target cache, carried from its run to its next
    with tempfile.TemporaryDirectory() as tmp:
        options = ExecOptions(cache_dir=Path(tmp) / "cache")
        ex.execute(plan[0], options)  # imports and first-use costs: out of both timings
        for i, r in enumerate(plan):  # the sides' runs interleaved, who goes first alternating
            for name in ("no cache", "cache") if i % 2 == 0 else ("cache", "no cache"):
                ex._TARGETS.clear()  # "no cache": empty before each run; "cache": its own, the first run fills it
                if name == "cache":
                    ex._TARGETS.update(kept)
                t0 = time.perf_counter()
                rec = ex.execute(r, options)
                assert rec.status == "ok", rec.error
                out[name][0].append(time.perf_counter() - t0)
                out[name][1].append(rec.metrics.get(rec.primary_metric))
                if name == "cache":
                    kept = OrderedDict(ex._TARGETS)
    before, after = out["no cache"], out["cache"]
    # the kept cache's first run loads as before: compare the runs after it
    b, a = statistics.median(before[0][1:]), statistics.median(after[0][1:])
    return {"pair": pair, "runs": len(plan), "no_cache_s": [round(t, 2) for t in before[0]],
            "cache_s": [round(t, 2) for t in after[0]], "per_run_no_cache_s": round(b, 2),
            "per_run_cache_s": round(a, 2), "saved_per_run_s": round(b - a, 2), "ratio": round(a / b, 3),
            "same_metrics": before[1] == after[1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="makespan,overhead,cache")
    args = ap.parse_args()
    from harness.run.process import quiet_libraries

    quiet_libraries()
    parts = set(args.only.split(","))
    results = {}
    if parts & {"makespan", "overhead"}:
        import ray

        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        ray.init(num_cpus=2, num_gpus=GPUS, include_dashboard=False, log_to_driver=False)
        try:
            if "makespan" in parts:
                results["makespan"] = bench_makespan(ray)
                print("makespan", results["makespan"], flush=True)
            if "overhead" in parts:
                results["overhead"] = bench_overhead(ray)
                print("overhead", results["overhead"], flush=True)
        finally:
            ray.shutdown()
    if "cache" in parts:
        for pair in ("effnet-digits", "minilm-wnut16"):
            results[f"cache {pair}"] = bench_cache(pair)
            print("cache", results[f"cache {pair}"], flush=True)
    ok = all([results.get("makespan", {}).get("ratio", 0) <= 1.1,
              results.get("overhead", {}).get("overhead_per_run_s", 0) <= 1.0,
              *[v["same_metrics"] for k, v in results.items() if k.startswith("cache")]])
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
