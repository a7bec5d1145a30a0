"""The Jobs pages in a real browser: Playwright driving Debian's Chromium (``tox -e web``).

Skipped, with the reason, where Playwright or /usr/bin/chromium is missing (``.ci/run`` installs
Chromium; no browser is ever downloaded). The store is a real SQLite file on a fake store clock, so
stalled and lost are judged deterministically; waits are Playwright's auto-waiting, never sleeps.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from _http_support import TOKEN, running_app
from _web_support import READ_TOKEN, XSS_ID, SeededStore, seeded_store

CHROMIUM = Path("/usr/bin/chromium")

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="needs playwright (tox -e web installs it)"
)
if not CHROMIUM.exists():
    pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

expect = playwright_api.expect
READY = ("backtest-done", "eval-cancelled")
SCREENSHOT_ENV = "WEB_SCREENSHOT_DIR"  # not JOBPROGRESS_*: the suite clears those
"""If set, the screenshots are copied into this directory too (how docs/img/web-*.png are made)."""


def _keep(shot: Path) -> None:
    assert shot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(shot, Path(os.environ[SCREENSHOT_ENV]) / shot.name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, SeededStore]]:
    from jobprogress.server import create_app

    with seeded_store(tmp_path) as store:
        app = create_app(
            store.url, token=TOKEN, read_token=READ_TOKEN, writer=store.writer, reader=store.reader
        )
        with running_app(app) as url:
            yield url, store


def _page(browser: Browser, url: str, **options: Any) -> tuple[Page, list[str]]:
    context = browser.new_context(
        base_url=url,
        http_credentials={"username": "ops", "password": READ_TOKEN},
        viewport={"width": 1200, "height": 640},
        **options,
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    return page, problems


def _rows(page: Page) -> list[str]:
    return [row.get_attribute("data-job") or "" for row in page.locator("table.jobs tbody tr").all()]


def test_the_list_shows_every_state_in_order(
    browser: Browser, site: tuple[str, SeededStore], tmp_path: Path
) -> None:
    url, _ = site
    page, problems = _page(browser, url)
    page.goto("/jobs")
    expect(page.locator("table.jobs tbody tr")).to_have_count(7)
    assert _rows(page) == ["parse-failed", "scan-lost", "scan-stalled", XSS_ID, "scan-running", *READY]
    states = page.locator("table.jobs tbody tr td:nth-child(3)").all_inner_texts()
    assert states == ["failed", "lost", "stalled", "running", "running", "succeeded", "cancelled"]
    expect(page.locator("tr[data-job='parse-failed']")).to_contain_text(
        "812/4,000 rows · ValueError: row 812"
    )
    expect(page.locator("tr[data-job='backtest-done']")).to_contain_text("500/500 iterations · pass 98.0%")
    shot = tmp_path / "web-jobs.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot)
    assert problems == []  # no CSP violation, no script error
    page.context.close()


def test_the_list_updates_without_a_reload(browser: Browser, site: tuple[str, SeededStore]) -> None:
    url, store = site
    page, problems = _page(browser, url)
    page.goto("/jobs")
    row = page.locator("tr[data-job='scan-running']")
    expect(row).to_contain_text("80/200 files")
    page.evaluate("window.notReloaded = true")
    store.advance("scan-running", 77)  # a worker writes a new row: 77 + 40
    expect(row).to_contain_text("117/200 files", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True  # swapped in by the script, not a reload
    store.advance("scan-running", 100, worker="w2")
    expect(row).to_contain_text("177/200 files", timeout=15_000)
    assert problems == []
    page.context.close()


def test_filters_and_the_detail_page(browser: Browser, site: tuple[str, SeededStore], tmp_path: Path) -> None:
    url, _ = site
    page, problems = _page(browser, url)
    page.goto("/jobs")
    page.select_option("select[name=state]", "actionable")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/jobs?state=actionable&kind=&q=")
    expect(page.locator("table.jobs tbody tr")).to_have_count(3)
    assert _rows(page) == ["parse-failed", "scan-lost", "scan-stalled"]
    page.fill("input[name=q]", "lost")
    page.click("button[type=submit]")
    expect(page.locator("table.jobs tbody tr")).to_have_count(1)
    page.click("text=scan-lost")
    expect(page).to_have_url(f"{url}/jobs/scan-lost")
    expect(page.locator("h1")).to_contain_text("scan-lost")
    expect(page.locator("h1 .badge")).to_have_text("lost")
    expect(page.locator("#workers tbody tr")).to_have_count(2)
    page.goto("/jobs/parse-failed")
    expect(page.locator("pre.error")).to_have_text("ValueError: row 812 has 3 columns, expected 4")
    expect(page.locator("table.payload")).to_contain_text("big.csv")
    page.goto("/jobs/scan-stalled")
    expect(page.locator("#workers tbody tr")).to_have_count(2)
    page.screenshot(path=str(tmp_path / "web-job.png"), full_page=True)
    _keep(tmp_path / "web-job.png")
    page.goto("/jobs?kind=backtest")
    assert _rows(page) == ["backtest-done"]
    assert problems == []
    page.context.close()


def test_a_script_in_a_job_id_is_text(browser: Browser, site: tuple[str, SeededStore]) -> None:
    url, store = site
    page, problems = _page(browser, url)
    page.goto("/jobs")
    cell = page.locator("table.jobs tbody tr td.id a", has_text="alert(1)")
    expect(cell).to_have_text(XSS_ID)
    store.advance(XSS_ID, 50)  # and through a refresh, which swaps the new HTML in
    expect(page.locator(f"tr[data-job='{XSS_ID}']")).to_contain_text("90/200 files", timeout=15_000)
    cell.click()
    expect(page.locator("h1")).to_contain_text(XSS_ID)
    store.advance(XSS_ID, 60)
    expect(page.locator("#progress")).to_contain_text("100/200 files", timeout=15_000)
    assert problems == []  # above all: no dialog opened
    page.context.close()


def test_the_page_works_without_javascript(browser: Browser, site: tuple[str, SeededStore]) -> None:
    url, _ = site
    page, problems = _page(browser, url, java_script_enabled=False)
    page.goto("/jobs?state=running")
    expect(page.locator("table.jobs tbody tr")).to_have_count(2)
    assert _rows(page) == [XSS_ID, "scan-running"]
    refresh = page.locator("noscript").first.inner_html()
    assert 'http-equiv="refresh"' in refresh
    page.click("text=scan-running")
    expect(page.locator("#workers tbody tr")).to_have_count(2)
    assert problems == []
    page.context.close()


def test_the_browser_is_asked_for_the_token(browser: Browser, site: tuple[str, SeededStore]) -> None:
    url, _ = site
    context = browser.new_context(base_url=url)
    page = context.new_page()
    # Headless Chromium cannot show the sign-in prompt a Basic challenge opens, so it reports that.
    with pytest.raises(playwright_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
        page.goto("/jobs")
    response = context.request.get("/jobs")
    assert response.status == 401
    assert response.headers["www-authenticate"].startswith("Basic")
    assert "parse-failed" not in response.text()
    context.close()
