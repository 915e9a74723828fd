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


def pytest_collection_modifyitems(config, items):
    """A test's folder matches its markers: every test under tests/integration/ is marked
    ``integration``, no test under tests/unit/ is ``slow`` or ``integration`` (a slow unit-level
    check belongs in tests/integration/), and ``gpu`` tests skip cleanly where CUDA is absent."""
    import torch

    wrong = []
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        names = {m.name for m in item.iter_markers()}
        if folder == "integration" and "integration" not in names:
            wrong.append(f"{item.nodeid}: under tests/integration/ but not marked integration")
        if folder == "unit" and names & {"slow", "integration"}:
            wrong.append(f"{item.nodeid}: marked {sorted(names & {'slow', 'integration'})} in tests/unit/")
        if "gpu" in names and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
    if wrong:
        raise pytest.UsageError("tests whose folder and markers disagree:\n" + "\n".join(wrong))
