"""Helpers shared by the reliability tests: tiny suites, real CLI subprocesses, record fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.records import scan

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Tiny CNN on synthetic images with all three strategies, so feature-cache writes (linear_probe)
# happen alongside record writes. CRASH_SUITE_TEXT adds a tiny-BERT NER pair (slow variant: a
# fresh process pays the transformers import on its first text run).
CNN_PAIR = """\
pairs:
  - id: cnn
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification}
"""
CRASH_SUITE = """\
suite: crash
seeds: [0, 1, 2]
defaults: {epochs: 1, batch_size: 16, max_steps: 2, max_train_samples: 32, max_eval_samples: 16, lr: 1e-2}
""" + CNN_PAIR + """\
strategies:
  - scratch
  - linear_probe
  - full_finetune
"""
CRASH_SUITE_TEXT = CRASH_SUITE.replace("strategies:", """\
  - id: bert
    source: {model: test/tiny_bert}
    target: {dataset: test/tiny_ner, task: token-classification}
strategies:""")


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


# `harness ARGS` whose every atomic write stops for PAUSE seconds with half its bytes on disk
# (records.mid_write_hook, set in that process only): a window in which to find or kill the writer
PAUSED_HARNESS = """\
import sys, time
from harness import cli, records
records.mid_write_hook = lambda path: time.sleep(float(sys.argv[1]))
sys.exit(cli.main(sys.argv[2:]))
"""


def paused_harness_cmd(pause_s: float, *args: str) -> list[str]:
    return [sys.executable, "-c", PAUSED_HARNESS, str(pause_s), *args]


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """``harness ARGS`` in a fresh interpreter (the real entry point, not an in-process call)."""
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(harness_cmd(*args), env=full_env, capture_output=True, text=True, timeout=timeout,
                          cwd=kw.pop("cwd", None), **kw)


def fingerprints(results: Path) -> dict[str, tuple]:
    """run_id → (status, inode, mtime_ns, started_at) of every valid record under ``results``."""
    records, _ = scan(results)
    out = {}
    for r in records:
        st = (results / r.suite / f"{r.run_id}.json").stat()
        out[r.run_id] = (r.status, st.st_ino, st.st_mtime_ns, r.started_at)
    return out
