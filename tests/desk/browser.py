"""The operator's browser for tests: Debian's chromium, headless, driven by selenium
through Debian's chromedriver (nothing is downloaded: the driver's path is given and
Selenium Manager is kept offline), and the few steps every page test takes with it.

Shared by tests/desk/test_web_browser.py and the complaint stories (tests/e2e): import
the `browser` fixture from here."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.desk.web import PASSWORDS, DeskPage

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = "1280,1000"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_SCREENSHOT_BYTES = 10_000  # a blank page is far smaller
PAGE_WAIT_S = 30.0  # a click returns before the next page is there: wait for what it shows


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: run scripts/system-deps.sh (chromium, "
                        "chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver
    profile = tempfile.mkdtemp(prefix="kiosk-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--window-size={WINDOW}", f"--user-data-dir={profile}", "--lang=ru-RU"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shows(b: WebDriver, element_id: str, text: str) -> str:
    """Wait until the element (of the page a click led to) shows `text`; its text."""
    def seen(d: WebDriver) -> str | bool:
        try:
            got = d.find_element(By.ID, element_id).text
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return got if text in got else False

    try:
        return str(WebDriverWait(b, PAGE_WAIT_S).until(seen))
    except TimeoutException:
        pytest.fail(f"#{element_id} never showed {text!r}; the page says: "
                    f"{b.find_element(By.TAG_NAME, 'body').text[:500]}")


def screenshot(b: WebDriver, name: str, folder: Path) -> None:
    """A screenshot into `folder`, checked to be a real picture of a page."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert b.save_screenshot(str(path))
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > MIN_SCREENSHOT_BYTES


def login(b: WebDriver, page: DeskPage, who: str, password: str | None = None) -> None:
    """Log in through the form; with the right password (the default), wait until in."""
    b.get(page.web.url + "/login")
    b.find_element(By.ID, "login").send_keys(who)
    b.find_element(By.ID, "password").send_keys(password or PASSWORDS[who])
    b.find_element(By.ID, "submit").click()
    if password is None:
        shows(b, "who", f"{who} (")


def search(b: WebDriver, page: DeskPage, typed: str, expect: str) -> str:
    """Type into the search box what the customer reads out; the results' text."""
    b.get(page.web.url + "/")
    b.find_element(By.ID, "q").send_keys(typed)
    b.find_element(By.ID, "find").click()
    return shows(b, "results", expect)
