"""The report as a user sees it: opened in headless Chromium (Debian's ``chromium``, driven
by playwright's client with the system browser; nothing is downloaded).

Three reports: the example run (``examples/seiir_like``, all successes), a run with an
OOM retry and failures, and a 100,000-node run. For each: the counts, task names and a
failure reason are on the page, the timeline has its bars, the attempt table pages, and
the console has no error. Screenshots go to ``$GM_TEST_ARTIFACTS`` (default
``test-artifacts/report``); with ``GM_UPDATE_DOCS_SCREENSHOT=1`` the example run's also
replaces ``docs/images/report.png``.

Run with ``-m browser`` (``nox -s report``, which installs chromium when it is missing);
otherwise skipped. Selected without chromium or playwright, they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_testing import selected
from gm_runstore import build_run
from gm_testing import attempts

from gristmill.report.html import write_report

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("GM_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("GM_TEST_ARTIFACTS", ROOT / "test-artifacts" / "report"))
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "report.png"
#: Generous: a loaded 2-core machine renders a 100,000-attempt report in about 10 s.
LOAD_MS = 180_000


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    if not selected(request, "browser"):
        pytest.skip("browser tests run only with -m browser (nox -s report)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"-m browser selected, but there is no {CHROMIUM}: apt-get install chromium "
                    "(or point GM_CHROMIUM at a Chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"-m browser selected, but playwright is not installed ({exc}): "
                    "pip install 'gristmill[browser]'")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def open_report(browser: Any, path: Path, shot: str) -> tuple[Any, list[str]]:
    """The page of the report at ``path`` once its table is unpacked, and its console errors;
    a full-page screenshot is saved as ``shot``."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: errors.append(f"network request: {r.url}")
            if not r.url.startswith(("file:", "data:", "blob:")) else None)
    page.goto(path.as_uri(), timeout=LOAD_MS)
    page.wait_for_selector("body[data-table-ready=yes]", timeout=LOAD_MS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    return page, errors


def timeline_bars(page: Any) -> int:
    """Attempts drawn on the timeline: segments of its non-queue traces, as plotly holds them."""
    return int(page.evaluate("""() => document.getElementById('timeline-plot').data
        .filter(t => t.name !== 'queued')
        .reduce((n, t) => n + t.x.filter(v => v === null).length, 0)"""))


def test_the_example_run_renders_and_makes_the_docs_screenshot(browser: Any,
                                                               tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    gristmill = [sys.executable, "-c", "from gristmill.cli.app import main; main()"]
    done = subprocess.run(
        [*gristmill, "run", "seiir_like.pipeline:seiir", "--version", "demo", "--output-root",
         str(tmp_path / "out"), "--spec", str(ROOT / "examples/seiir_like/specs/laptop.yaml"),
         "--run-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    run_dir = (tmp_path / "runs" / "latest").resolve()
    made = subprocess.run([*gristmill, "report", str(run_dir)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert made.returncode == 0, made.stderr
    page, errors = open_report(browser, run_dir / "report.html", "example.png")
    assert errors == []
    assert page.locator("#run-status").inner_text() == "succeeded"
    assert page.locator('#counts [data-state="DONE"]').inner_text() == "16 DONE"
    tasks = page.locator("#task-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.task)")
    assert tasks == ["fit", "validate", "forecast", "diagnostics"]
    assert page.locator(".gm-dag .gm-task").count() == 4
    assert page.locator(".gm-dag .gm-edge").count() == 3
    assert timeline_bars(page) == 16
    assert page.locator("#failure-list").inner_text() == "No attempt failed."
    assert page.locator("#attempts-table tbody tr").count() == 16
    # One memory box per task with a measured peak: a task that ends before the first
    # RSS sample, under the wrapper's own peak, records none (see worker/monitor.py).
    measured = {a.task for a in attempts(run_dir) if a.peak_rss}
    assert page.locator("#mem-plot .box").count() == len(measured) >= 1
    page.set_viewport_size({"width": 1280, "height": 1400})
    page.evaluate("window.scrollTo(0, document.getElementById('tasks').offsetTop - 50)")
    shot = ARTIFACTS / "docs-report.png"  # tasks, graph, requested vs used, timeline
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size < 300 * 1024
    if os.environ.get("GM_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    page.close()


def test_a_run_with_an_oom_retry_and_failures_shows_them(browser: Any, mixed_run: Path,
                                                         tmp_path: Path) -> None:
    write_report(mixed_run, tmp_path / "mixed.html")
    page, errors = open_report(browser, tmp_path / "mixed.html", "mixed.png")
    assert errors == []
    assert page.locator("#run-status").inner_text() == "not complete"
    assert page.locator('#counts [data-state="FAILED"]').inner_text() == "1 FAILED"
    hog = page.locator('#task-table tr[data-task="hog"]').inner_text()
    assert "under" in hog
    failures = page.locator("#failure-list").inner_text()
    assert "exit 3 — exit code 3" in failures
    assert "about to exit with code 3" in failures  # the sample's stderr tail
    assert "OOM — exceeded memory limit 200M" in failures
    assert timeline_bars(page) == 7
    page.select_option("#f-state", "OOM")
    page.wait_for_function(
        "() => document.getElementById('p-info').textContent.includes('1 of 7 attempts')")
    assert page.locator("#attempts-table tbody tr").count() == 1
    assert "exceeded memory limit" in page.locator("#attempts-table tbody").inner_text()
    page.close()


def test_a_100000_node_report_pages_its_table_and_samples_its_timeline(
    browser: Any, tmp_path: Path,
) -> None:
    counts = build_run(tmp_path / "big", 100_000)
    info = write_report(tmp_path / "big", tmp_path / "big.html")
    assert info.sampled
    page, errors = open_report(browser, tmp_path / "big.html", "100000.png")
    assert errors == []
    assert page.locator('#counts [data-state="DONE"]').inner_text() == \
        f"{counts['DONE']:,} DONE"
    assert f"{info.attempts:,} attempts" in page.locator("#counts").inner_text()
    assert page.locator("#timeline-note").inner_text().startswith(
        f"Sampled: {info.timeline_attempts:,} of {info.attempts:,} attempts")
    assert timeline_bars(page) == info.timeline_attempts
    assert "ValueError: draw N has no observations" in page.locator("#failure-list").inner_text()
    assert page.locator("#attempts-table tbody tr").count() == 100  # one page, not 100,000
    assert f"page 1 of {(info.attempts + 99) // 100:,}" in page.locator("#p-info").inner_text()
    page.locator('#attempts-table th[data-key="elapsed"]').click()
    page.locator('#attempts-table th[data-key="elapsed"]').click()  # longest first
    first = page.locator("#attempts-table tbody tr").first.inner_text()
    assert "TIMEOUT" in first  # the timed-out attempts ran longest
    page.close()
