"""Headless Chromium from Debian, driven by Playwright (never a downloaded browser)."""

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("TAGSITE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("TAGSITE_SCREENSHOTS", "/tmp/tagsite-screenshots"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def staff_page(browser, live_server, django_user_model):
    """A browser page logged in as a staff superuser through the login form."""
    django_user_model.objects.create_superuser("moderator", "", "a-long-password")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/")
    page.fill("input[name=username]", "moderator")
    page.fill("input[name=password]", "a-long-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """A full-page screenshot where people look at them (`TAGSITE_SCREENSHOTS`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def horizontal_overflow(page) -> list[str]:
    """What sticks out sideways: empty when the page scrolls only vertically, else the widest culprits."""
    return page.evaluate(
        """() => {
        if (document.documentElement.scrollWidth <= window.innerWidth) return [];
        const out = Array.from(document.querySelectorAll("body *"))
          .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
          .map((el) => `${el.tagName}.${el.className} right=${Math.round(el.getBoundingClientRect().right)}`);
        const total = `scrollWidth ${document.documentElement.scrollWidth} > innerWidth ${window.innerWidth}`;
        return [total, ...out.slice(0, 8)];
      }"""
    )


def outside_viewport_width(locator) -> list[str]:
    """The elements of a locator that do not lie wholly within the viewport's width."""
    return locator.evaluate_all(
        """(els) => els
          .filter((el) => { const r = el.getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth; })
          .map((el) => el.getAttribute("aria-label") || el.textContent)"""
    )
