"""The dashboard in a real headless browser (Debian's Chromium through chromedriver).

The page loads, shows a run's progress, updates as objects complete, draws its plots, and
logs nothing to the browser console. Nothing is downloaded: the driver and the browser are
the Debian packages (installed by scripts/setup.sh or .ci/run when missing).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from lor.db.truth_store import load_truth
from lor.runs.lifecycle import create_run
from lor.runs.processing import process_batch
from tests.db.test_posterior_views import GmmProcessor, gmm_flow, register_estimator_row
from tests.workers.support import ingest_synthetic, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,2400",
)  # fmt: skip

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture()
def browser() -> Iterator:  # type: ignore[type-arg]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lor-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _text(driver, css: str) -> str:  # type: ignore[no-untyped-def]
    return driver.find_element("css selector", css).text


def _loaded(driver, img_id: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        driver.execute_script(
            "const i = document.getElementById(arguments[0]);"
            "return i && !i.hidden && i.complete && i.naturalWidth > 100;",
            img_id,
        )
    )


def test_page_follows_a_run_as_objects_complete(engine, tmp_path: Path, dashboard, browser) -> None:  # type: ignore[no-untyped-def]
    n = 200
    ingest_synthetic(engine, tmp_path, n)
    flow = gmm_flow()
    run = create_run(engine, "DR1", name="live", estimator=register_estimator_row(engine, flow)).run
    with engine.begin() as conn:
        ids = conn.execute(text("SELECT catalog_id FROM lor.objects")).scalars().all()
        load_truth(conn, ids, [0.3 + 0.01 * (i % 200) for i in range(len(ids))], "test")
    processor = GmmProcessor(flow)

    browser.get(dashboard.url + "/")
    wait_for(lambda: "live" in _text(browser, "#runs tbody"), 20, "the run in the runs table")
    wait_for(lambda: _text(browser, "#run-pending") == str(n), 20, "the run's pending count")
    assert _text(browser, "#run-done") == "0"
    assert "Run " in _text(browser, "#run-title") and "live" in _text(browser, "#run-title")

    process_batch(engine, run.id, worker="t:1", size=50, processor=processor)
    wait_for(lambda: _text(browser, "#run-done") == "50", 20, "the page to show 50 done")
    assert _text(browser, "#run-pending") == str(n - 50)
    for _ in range(3):
        process_batch(engine, run.id, worker="t:1", size=50, processor=processor)
    wait_for(lambda: _text(browser, "#run-done") == str(n), 20, "the page to show every object")
    assert _text(browser, "#run-eta") == "done"
    for img in ("plot-progress", "plot-nz", "plot-ood", "plot-truth"):
        wait_for(lambda img=img: _loaded(browser, img), 30, f"{img} to load")
    assert not browser.find_element("css selector", "#truth").get_attribute("hidden")
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
