"""Every suite file in suites/ and benchmarks/suites/ validates and expands to a plan (no torch run, no network)."""

from __future__ import annotations

import pytest

from harness.plan import expand
from harness.suite import load_suite
from tests.conftest import ROOT

SUITES = sorted([*(ROOT / "suites").glob("*.yaml"), *(ROOT / "benchmarks" / "suites").glob("*.yaml")])


def test_there_are_suites():
    assert any(p.name == "quickstart.yaml" for p in SUITES)


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_suite_validates_and_plans(path):
    spec = load_suite(path)
    runs = expand(spec)
    cells = sum(len(p.strategies) if p.strategies is not None else len(spec.strategies) for p in spec.pairs)
    assert sum(r.role == "final" for r in runs) == cells * len(spec.seeds)
    assert len({r.run_id for r in runs}) == len(runs)
    order = {r.run_id: i for i, r in enumerate(runs)}
    assert all(order[d] < order[r.run_id] for r in runs for d in r.depends_on)  # dependencies first
