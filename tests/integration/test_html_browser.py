"""`harness report --html` in a real headless Chromium, driven by Selenium: the page loads with no
console errors, a header click sorts, typing in a filter hides rows; a screenshot is kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.records import write_record
from tests.unit.test_html import records

pytestmark = pytest.mark.integration
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs `pip install selenium`")

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def browser():
    """Headless Chromium from the system's packages (.ci/run installs them)."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def page(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    for r in records():
        write_record(results / r.suite, r)
    assert main(["report", "--results", str(results), "--reports", str(tmp_path / "reports"), "--no-plots",
                 "--no-export", "--html"]) == 0
    return tmp_path / "reports" / "demo.html"


@pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM), reason="needs chromium and chromium-driver (apt-get install "
                    "chromium chromium-driver; .ci/run does)")
def test_leaderboard_sorts_filters_and_loads_cleanly(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    html = page(tmp_path)
    driver = browser()
    try:
        driver.get(html.as_uri())
        table = driver.find_element(By.ID, "pair0")

        def names() -> list[str]:
            return [r.find_elements(By.TAG_NAME, "td")[1].text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
                    if r.is_displayed()]

        before = names()
        assert before[0] == "full_finetune"  # ranked first
        header = table.find_elements(By.CSS_SELECTOR, "thead th")[1]  # strategy
        header.click()
        assert names() == sorted(before)
        header.click()
        assert names() == sorted(before, reverse=True)
        score = table.find_elements(By.CSS_SELECTOR, "thead th")[2]
        score.click()  # ascending by the primary metric: the worst first
        assert names()[0] == "scratch" and names()[-1] == "full_finetune"

        box = driver.find_element(By.CSS_SELECTOR, 'input.filter[data-table="pair0"]')
        box.send_keys("probe")
        assert names() == ["linear_probe"]
        box.clear()
        box.send_keys(" ")  # an input event with an empty query shows every row again
        assert sorted(names()) == sorted(before)

        mark = driver.find_element(By.CSS_SELECTOR, "#pair0 span.mark")
        assert mark.text == "↗" and "still rising" in mark.get_attribute("title")
        point = driver.find_element(By.CSS_SELECTOR, "svg circle[data-row]")
        ActionChains(driver).move_to_element(point).perform()
        tip = driver.find_element(By.ID, "tip")
        assert tip.is_displayed() and "s per run" in tip.text

        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        shot = tmp_path / "leaderboard.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
