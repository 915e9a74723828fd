"""Pool workers: a fresh interpreter per worker (``spawn``) vs a fork of a forkserver that has
imported torch and the harness once (what ``PoolExecutor`` uses where the platform has one).

Two sides, one process, alternated, ``--repeat`` rounds each; each round times
  ready:   ``PoolExecutor.start()`` of ``--workers`` workers until each has answered one job
  replace: one worker SIGKILLed, a new one started in its place, until it has answered one job
(the job is an echo: the times are process start-up only, no run). The forkserver lives as long as
the process that started it, so only its first round pays its own imports; the figure quoted
beside each is the median over rounds, and the first forkserver round is printed apart.

    python benchmarks/bench_pool_start.py [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

from harness.executors.pool import PoolExecutor
from harness.run.execute import ExecOptions


def echo(job, options):
    return job


class _Spec:
    run_id = "echo"


class _Job:
    spec = _Spec()


def one_round(method: str, workers: int) -> tuple[float, float]:
    pool = PoolExecutor(ExecOptions(cache_dir=None), workers=workers, threads=1, run=echo)
    if method == "spawn":
        pool.ctx = multiprocessing.get_context("spawn")
    try:
        t = time.perf_counter()
        pool.start()
        for w in pool.workers:
            w.conn.send(_Job())
        for w in pool.workers:
            w.conn.recv()
        ready = time.perf_counter() - t
        dead = pool.workers[0]
        dead.proc.kill()
        dead.proc.join()
        t = time.perf_counter()
        pool.workers.remove(dead)
        new = pool._spawn()
        new.conn.send(_Job())
        new.conn.recv()
        return ready, time.perf_counter() - t
    finally:
        pool.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    times: dict[str, list[tuple[float, float]]] = {"spawn": [], "forkserver": []}
    for _ in range(args.repeat):
        for method in times:
            times[method].append(one_round(method, args.workers))
    first = times["forkserver"][0]
    print(f"forkserver, first round (pays its imports): ready {first[0]:.2f} s, replace {first[1]:.3f} s")
    for method, rounds in times.items():
        ready = statistics.median(r for r, _ in rounds)
        replace = statistics.median(p for _, p in rounds)
        print(f"{method:>10}: {args.workers} workers ready {ready:.2f} s, a replacement {replace:.3f} s "
              f"(median of {len(rounds)})")
    s, f = times["spawn"], times["forkserver"]
    print(f"ratio forkserver/spawn: ready {statistics.median(r for r, _ in f) / statistics.median(r for r, _ in s):.3f}, "
          f"replace {statistics.median(p for _, p in f) / statistics.median(p for _, p in s):.3f}")


if __name__ == "__main__":
    main()
