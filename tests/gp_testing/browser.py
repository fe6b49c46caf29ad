"""Driving the console in Debian's chromium through Playwright (no download)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: no background calls home.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTHS = [(1440, 900), (390, 844)]  # desktop, phone


def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    return CHROMIUM


async def sign_in(page: Any, base: str, token: str, width: int) -> None:
    """Open the console, check the sign-in button is on screen, sign in."""
    from playwright.async_api import expect

    await page.goto(f"{base}/")
    button = page.locator("#login-form button[type=submit]")
    await expect(button).to_be_visible()
    box = await button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    await page.fill("#token", token)
    await button.click()
    await page.locator("#who").filter(has_text="token:").wait_for()


async def fits(page: Any, width: int) -> None:
    """No control pushes the page wider than the screen (tables scroll in their box)."""
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, (page.url, scroll_width, width)


async def signed_in_page(browser: Any, base: str, token: str, width: int, height: int) -> Any:
    """A new context (its own tab storage) at this size, signed in: its page."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    await sign_in(page, base, token, width)
    return page


async def confirm(page: Any, answer: bool | None, width: int | None = None) -> str:
    """Answer the console's in-page confirmation (``<dialog id="confirm">``) by
    its labelled buttons, or with the Escape key (``answer`` None), as a user
    would; check it fits the screen (``width``); return what it said."""
    from playwright.async_api import expect

    dialog = page.locator("#confirm")
    await expect(dialog).to_be_visible()
    said: str = await dialog.inner_text()
    no, yes = dialog.locator("#confirm-no"), dialog.locator("#confirm-yes")
    await expect(no).to_be_focused()  # declining is the default
    if width is not None:
        for button in (no, yes):
            box = await button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    if answer is None:
        await page.keyboard.press("Escape")
    else:
        await (yes if answer else no).click()
    await expect(dialog).to_be_hidden()
    return said
