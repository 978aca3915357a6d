"""The operator's page in a real browser: Debian's chromium, headless, driven by selenium
through Debian's chromedriver (nothing is downloaded: the driver's path is given and
Selenium Manager is kept offline). Behind the page: a real terminal paying through a real
mosquitto into a desk worker on SQLite.

The screenshots in docs/images/desk-*.png are taken here (docs/desk.md shows them)."""

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

from sync.desk_service.operators import Operators
from tests.desk.web import PASSWORDS, DeskPage, page_with_terminal
from tests.sync.conftest import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WINDOW = "1280,1000"
SCREENSHOTS_ENV = "KIOSK_DESK_SCREENSHOTS"  # "docs": write docs/images/desk-*.png anew
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


@pytest.fixture(scope="module")
def desk_page(tmp_path_factory, broker, desk_key) -> Iterator[DeskPage]:
    tmp = tmp_path_factory.mktemp("deskpage")
    page = page_with_terminal(tmp, tmp / "desk.sqlite", broker, desk_key)
    yield page
    page.stop()


@pytest.fixture
def b(browser: WebDriver, desk_page: DeskPage) -> WebDriver:
    """A fresh start: no session, Russian."""
    browser.get(desk_page.web.url + "/login")
    browser.delete_all_cookies()
    return browser


def _shows(b: WebDriver, element_id: str, text: str) -> str:
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


def _screenshot(b: WebDriver, name: str, folder: Path) -> None:
    """Into the test's folder; into docs/images with KIOSK_DESK_SCREENSHOTS=docs (so a
    test run does not rewrite the documentation's pictures)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert b.save_screenshot(str(path))
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > MIN_SCREENSHOT_BYTES


def _login(b: WebDriver, page: DeskPage, login: str, password: str | None = None) -> None:
    b.get(page.web.url + "/login")
    b.find_element(By.ID, "login").send_keys(login)
    b.find_element(By.ID, "password").send_keys(password or PASSWORDS[login])
    b.find_element(By.ID, "submit").click()
    if password is None:  # the right one: wait until logged in
        _shows(b, "who", f"{login} (")


def _paid(page: DeskPage) -> str:
    assert page.term is not None
    pid = page.term.pay(500)
    wait_for(lambda: page.store.known_payment(page.tid, pid) is not None, 20, "at the desk")
    return pid


def _open_payment(b: WebDriver, page: DeskPage, pid: str, shots: Path | None = None) -> None:
    b.get(page.web.url + "/")
    b.find_element(By.ID, "q").send_keys("+7 (916) 123-45-67")
    b.find_element(By.ID, "find").click()
    _shows(b, "results", pid)
    if shots is not None:
        _screenshot(b, "desk-search.png", shots)
    b.find_element(By.LINK_TEXT, pid).click()
    _shows(b, "timeline", "Запись получена от терминала")


def test_login_and_a_wrong_password(b, desk_page):
    _login(b, desk_page, "op1", "not-the-password")
    _shows(b, "error", "Неверный логин или пароль")
    assert b.get_cookie("kd_session") is None
    _login(b, desk_page, "op1")
    _shows(b, "who", "op1 (operator)")
    cookie = b.get_cookie("kd_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_a_phone_as_read_out_finds_the_payment_and_a_reprocess_reaches_the_terminal(
        b, desk_page, tmp_path):
    shots = DOCS_IMAGES if os.environ.get(SCREENSHOTS_ENV) == "docs" else tmp_path
    pid = _paid(desk_page)
    _login(b, desk_page, "op1")
    _open_payment(b, desk_page, pid, shots)
    b.find_element(By.ID, "new-account").send_keys("916 999-99-99")
    b.find_element(By.ID, "reason").send_keys("клиент ошибся номером")
    b.find_element(By.ID, "do-reprocess").click()
    _shows(b, "note", "Выполнено терминалом")
    assert desk_page.term is not None
    p = desk_page.term.ledger.get_payment(pid)
    assert p["account"] == "9169999999" and p["reprocess_count"] == 1
    wait_for(lambda: desk_page.store.known_payment(desk_page.tid, pid) == 1, 20,
             "the re-processed record back at the desk")
    b.refresh()
    timeline = _shows(b, "timeline", "Ответ терминала")
    assert "Команда отправлена" in timeline and "Ответ терминала" in timeline
    assert "reprocess: executed" in timeline and "9169999999" in timeline
    _screenshot(b, "desk-payment.png", shots)
    b.get(desk_page.web.url + "/terminals")
    _shows(b, "terminals", desk_page.tid)
    _screenshot(b, "desk-terminals.png", shots)


def test_a_viewers_reprocess_is_refused_and_audited(b, desk_page):
    pid = _paid(desk_page)
    _login(b, desk_page, "view1")
    _open_payment(b, desk_page, pid)
    b.find_element(By.ID, "new-account").send_keys("9160000000")
    b.find_element(By.ID, "do-reprocess").click()
    _shows(b, "error", "Недостаточно прав")
    assert desk_page.term is not None
    assert desk_page.term.ledger.get_payment(pid)["reprocess_count"] == 0
    rows = Operators(desk_page.store.engine).audit_rows(target=pid)
    assert [(r["login"], r["action"], r["outcome"]) for r in rows] == [
        ("view1", "reprocess", "refused")]


def test_a_post_without_the_csrf_token_is_refused(b, desk_page):
    pid = _paid(desk_page)
    _login(b, desk_page, "op1")
    _open_payment(b, desk_page, pid)
    # what a forged form lacks: the session's token
    b.execute_script("document.querySelector('#status-form input[name=csrf]').remove()")
    b.find_element(By.ID, "do-status").click()
    _shows(b, "error", "форма устарела")
    assert desk_page.store.statuses_sent(desk_page.tid) == [] or all(
        s["payment_id"] != pid for s in desk_page.store.statuses_sent(desk_page.tid))
    rows = Operators(desk_page.store.engine).audit_rows(target=pid)
    assert [(r["login"], r["action"], r["outcome"]) for r in rows] == [
        ("op1", "set_status", "refused")]
