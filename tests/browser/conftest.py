"""Playwright driving Debian's Chromium (never a downloaded browser) against the live server."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def chromium_path() -> str:
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("chromium is not installed: `make test` installs it with apt-get (scripts/system-deps.sh)")


# Chromium now and then never answers a new page (microsoft/playwright#3939, #4761): past
# this many seconds the browser is killed, which fails the pending call, and relaunched once.
NEW_PAGE_SECONDS = 60


class Chromium:
    """One Chromium for a test module; `new_page` survives a browser that stopped answering."""

    def __init__(self, playwright) -> None:
        self.playwright = playwright
        self.browser = self._launch()

    def _launch(self):
        return self.playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)

    def new_page(self, **context_options):
        """(context, page); relaunches the browser once if it hangs or dies on the way."""
        from playwright.sync_api import Error

        for attempt in (1, 2):
            watchdog = threading.Timer(NEW_PAGE_SECONDS, _kill_browsers)
            watchdog.start()
            try:
                context = self.browser.new_context(**context_options)
                return context, context.new_page()
            except Error:
                if attempt == 2:
                    raise
                self.browser = self._launch()
            finally:
                watchdog.cancel()
        raise AssertionError("unreachable")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.browser.close()


def _kill_browsers() -> None:
    """Kill the Chromium processes this test process started (through Playwright's driver)."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in child.name().lower():
                child.kill()


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module. Playwright's sync API runs an event loop in the test
    thread while it lives; the ORM calls these tests make are still synchronous, so they are
    allowed for that time only, and the loop is gone before other modules' async tests."""
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            chromium = Chromium(p)
            yield chromium
            chromium.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser: Chromium, live_url):
    context, page = browser.new_page(base_url=live_url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    yield page
    context.close()


def log_in(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
