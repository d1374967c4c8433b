"""The browser tier: Playwright's Python API driving Debian's chromium, headless, against
pytest-django's live server.

Debian's /usr/bin/chromium is the browser (`make chromium` or .ci/run installs it); Playwright's
own browser downloads are never used. Without it these tests fail, they do not skip.
Set BROWSER_SCREENSHOTS=<folder> to keep a screenshot of each test's last page.
Tests that need background work (linking a PSA) take `worker_process`: a real Celery worker
on the test database, pointed at the fake PSAs, as in the integration tier (tests/worker.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.factories import PASSWORD
from tests.worker import worker_process, worker_session  # noqa: F401 - shared with the integration tier

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium. "
            "Install it with `make chromium` (or `apt-get install chromium`).",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, live_server, transactional_db, request):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        folder = os.environ.get("BROWSER_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{request.node.name}.png"), full_page=True)
        context.close()


@pytest.fixture
def sign_in(page):
    """sign_in(user) signs in through the sign-in form and lands on the first settings page."""
    from playwright.sync_api import expect

    def sign_in(user, password: str = PASSWORD):
        page.goto("/login/")
        page.get_by_label("E-mail or username").fill(user.email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page).not_to_have_url(re.compile(r"/login/"))
        return page

    return sign_in
