"""Shared fixtures: suite files written into a temp dir, an isolated feature cache."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_SUITE = """\
suite: tiny
seeds: [0, 1]
defaults: {epochs: 1, batch_size: 16, lr: 1e-2}
pairs:
  - id: cnn-images
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification}
strategies:
  - scratch
  - linear_probe
  - full_finetune: {lr: 3e-3}
"""


@pytest.fixture
def write_suite(tmp_path):
    """Write YAML text (dedented) to a file and return its path."""

    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
