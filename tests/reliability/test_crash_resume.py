"""Crash and resume: SIGKILL a real ``harness run`` at random points, then resume; nothing is lost,
nothing is half-written, nothing finished is redone.

The driver (``crash_driver.py``) runs the real CLI in child processes and kills them: at random
delays (loading, training, feature extraction, writing) and inside ``atomic_write_bytes`` (the
``--write-pause-s`` hook, ``records.mid_write_hook``, keeps half a file on disk long enough to be killed there).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from harness.plan import expand
from harness.records import read_record, scan
from harness.suite import load_suite

from .support import CRASH_SUITE, CRASH_SUITE_TEXT, HERE, fingerprints, run_cli


def crash_and_resume(tmp_path, kills: int, exec_kills: int, seed: int, suite_text: str = CRASH_SUITE) -> dict:
    suite = tmp_path / "crash.yaml"
    suite.write_text(suite_text)
    results = tmp_path / "results"
    plan = expand(load_suite(suite))
    env = {**os.environ, "HARNESS_CACHE": str(results / ".cache"), "TOKENIZERS_PARALLELISM": "false"}
    driver = subprocess.run([sys.executable, str(HERE / "crash_driver.py"), str(suite), str(results),
                             "--kills", str(kills), "--exec-kills", str(exec_kills), "--seed", str(seed),
                             "--first-complete", "*scratch.s0*", "--write-pause-s", "0.05"], env=env, capture_output=True, text=True, timeout=600)
    assert driver.returncode == 0, driver.stderr[-3000:]
    report = json.loads(driver.stdout)
    log = report["log"]
    killed = [r for r in log if r["killed"]]
    record_mid_write = [r for r in killed if any(t.startswith("crash/") for t in r["temp_left"])]
    cache_mid_write = [r for r in killed if any(t.startswith(".cache/") for t in r["temp_left"])]
    print(f"\n{len(killed)} SIGKILLs ({sum(r['kind'] == 'exec' for r in killed)} of exec'd processes): "
          f"{len(record_mid_write)} inside a record write, {len(cache_mid_write)} inside a feature-cache write; "
          f"{log[-1]['ok']}/{len(plan)} runs ok before the resume; driver set-up {report['setup_s']} s, "
          f"kill rounds {sum(r['after_s'] for r in log):.1f} s")

    # After every single kill: no corrupt record, no ok record rewritten (checked by the driver).
    assert report["violations"] == []
    assert len(killed) >= 20  # a round whose child finished on its own is not a kill
    assert len(record_mid_write) >= 3, "the kills must land inside record writes, not only between them"

    # Resume with a real `harness run`, no test hook.
    before = fingerprints(results)
    ok_before = {k for k, v in before.items() if v[0] == "ok"}
    out = run_cli("run", str(suite), "--results", str(results), "--no-progress",
                  env={"HARNESS_CACHE": str(results / ".cache")})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    m = re.search(r"(\d+) run\(s\) executed, (\d+) already done", out.stdout)
    assert m, out.stdout
    assert (int(m[1]), int(m[2])) == (len(plan) - len(ok_before), len(ok_before))

    # Exactly one valid record per run, named by its run_id, and its kept predictions; no temp file left beside them.
    suite_dir = results / "crash"
    names = sorted(p.name for p in suite_dir.iterdir() if p.name != ".lock")
    assert names == sorted(f"{r.run_id}{ext}" for r in plan for ext in (".json", ".preds.npz"))
    records, corrupt = scan(results)
    assert corrupt == []
    assert sorted(r.run_id for r in records) == sorted(r.run_id for r in plan)
    assert all(read_record(suite_dir / f"{r.run_id}.json").status == "ok" for r in plan)

    # Completed runs were not redone: same inode, mtime and started_at as before the resume.
    after = fingerprints(results)
    assert {k: after[k] for k in ok_before} == {k: before[k] for k in ok_before}

    # Feature-cache files that carry a checksum verify; temp files there are never read.
    for pt in (results / ".cache").rglob("*.pt"):
        sidecar = pt.with_suffix(".sha256")
        if sidecar.exists():
            assert hashlib.sha256(pt.read_bytes()).hexdigest() == sidecar.read_text().strip(), pt
    return {"kills": len(killed), "record_mid_write": len(record_mid_write), "cache_mid_write": len(cache_mid_write)}


def test_sigkill_24_times_then_resume_loses_nothing(tmp_path):
    """24 kill rounds on the image suite (1 of an exec'd `python -m harness run`, 23 of forked children)."""
    crash_and_resume(tmp_path, kills=24, exec_kills=1, seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_40_times_image_and_text_pairs(tmp_path, seed):
    """More rounds, a text pair too, and more exec'd processes (killed during interpreter start-up)."""
    # Six seeds (36 runs): enough work left that 40 kills land before the suite completes on its own.
    suite = CRASH_SUITE_TEXT.replace("seeds: [0, 1, 2]", "seeds: [0, 1, 2, 3, 4, 5]")
    assert suite != CRASH_SUITE_TEXT
    crash_and_resume(tmp_path, kills=40, exec_kills=4, seed=seed, suite_text=suite)
