"""Every suite file in suites/ validates and expands to a plan (no torch run, no network)."""

from __future__ import annotations

import pytest

from harness.config.load import load_suite
from harness.plan import expand
from tests.conftest import ROOT

SUITES = sorted((ROOT / "suites").glob("*.yaml"))


def test_there_are_suites():
    assert any(p.name == "quickstart.yaml" for p in SUITES)


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_suite_validates_and_plans(path):
    spec = load_suite(path)
    runs = expand(spec)
    assert len(runs) == len(spec.pairs) * len(spec.strategies) * len(spec.seeds)
    assert len({r.run_id for r in runs}) == len(runs)
