"""The committed reference reports survive a user's `harness report` (issue 31): the report's
default output is a place git ignores, and the reference lives where that default never writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import parser

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reports" / "reference"


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture
def checkout():
    if shutil.which("git") is None or git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
        pytest.skip("needs the project's git checkout (an installed package has no .gitignore to check)")


def default_report(suite: str) -> Path:
    """Where `harness report` writes a suite's markdown when no --reports / --out is given."""
    return Path(parser().parse_args(["report"]).reports) / f"{suite}.md"


@pytest.mark.usefixtures("checkout")
def test_default_report_target_is_ignored_by_git():
    for suite in ("quickstart", "strategies", "domain", "zoo"):
        out = default_report(suite)
        assert not out.is_absolute()
        for path in (out, out.with_suffix(".csv"), out.with_suffix(".parquet"), out.with_suffix(".html"),
                     out.parent / suite / "effnet-digits-curve.png", out.parent / suite / ".plots.json"):
            assert git("check-ignore", "-q", str(path)).returncode == 0, f"{path} is not git-ignored"


@pytest.mark.usefixtures("checkout")
def test_reference_reports_are_tracked_and_not_the_default_target():
    tracked = git("ls-files", "reports").stdout.split()
    assert "reports/reference/quickstart.md" in tracked
    assert all(p.startswith("reports/reference/") for p in tracked), "a tracked report a user's run would overwrite"
    assert git("check-ignore", "-q", "reports/reference/quickstart.md").returncode == 1
    assert str(default_report("quickstart")) not in tracked


def test_readme_points_at_the_reference_not_at_the_default_output():
    readme = (ROOT / "README.md").read_text()
    assert "(reports/reference/quickstart.md)" in readme
    assert "(reports/quickstart.md)" not in readme
    assert (REFERENCE / "quickstart.md").is_file() and (REFERENCE / "quickstart.csv").is_file()
