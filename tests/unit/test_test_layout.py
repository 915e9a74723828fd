"""The rule tests/conftest.py enforces at collection: a test's folder matches its markers."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import ROOT


def collect(tmp_path, files: dict[str, str]) -> subprocess.CompletedProcess:
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "tests" / "conftest.py")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "", "-p", "no:cacheprovider"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_a_slow_unit_test_and_an_unmarked_integration_test_are_refused(tmp_path):
    out = collect(tmp_path, {
        "tests/unit/test_a.py": "import pytest\n\n@pytest.mark.slow\ndef test_x():\n    pass\n",
        "tests/integration/test_b.py": "def test_y():\n    pass\n",
    })
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "tests/unit/test_a.py::test_x: marked ['slow'] in tests/unit/" in text
    assert "tests/integration/test_b.py::test_y: under tests/integration/ but not marked integration" in text


def test_a_layout_that_follows_the_rule_collects(tmp_path):
    out = collect(tmp_path, {
        "tests/unit/test_a.py": "def test_x():\n    pass\n",
        "tests/integration/test_b.py": "import pytest\n\npytestmark = pytest.mark.integration\n\n"
                                       "@pytest.mark.gpu\ndef test_y():\n    pass\n",
    })
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 tests collected" in out.stdout
