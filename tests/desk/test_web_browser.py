"""The operator's page in a real browser: Debian's chromium, headless, driven by selenium
through Debian's chromedriver (nothing is downloaded: the driver's path is given and
Selenium Manager is kept offline). Behind the page: a real terminal paying through a real
mosquitto into a desk worker on SQLite.

The screenshots in docs/images/desk-*.png are taken here (docs/desk.md shows them): into
the test's folder, or into docs/images with KIOSK_DESK_SCREENSHOTS=docs (so a test run
does not rewrite the documentation's pictures)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from sync.desk_service.operators import Operators
from tests.desk.browser import login as _login
from tests.desk.browser import screenshot, search, shows
from tests.desk.web import DeskPage, page_with_terminal
from tests.sync.conftest import wait_for

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SCREENSHOTS_ENV = "KIOSK_DESK_SCREENSHOTS"  # "docs": write docs/images/desk-*.png anew


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


def _paid(page: DeskPage) -> str:
    assert page.term is not None
    pid = page.term.pay(500)
    wait_for(lambda: page.store.known_payment(page.tid, pid) is not None, 20, "at the desk")
    return pid


def _open_payment(b: WebDriver, page: DeskPage, pid: str, shots: Path | None = None) -> None:
    search(b, page, "+7 (916) 123-45-67", pid)
    if shots is not None:
        screenshot(b, "desk-search.png", shots)
    b.find_element(By.LINK_TEXT, pid).click()
    shows(b, "timeline", "Запись получена от терминала")


def test_login_and_a_wrong_password(b, desk_page):
    _login(b, desk_page, "op1", "not-the-password")
    shows(b, "error", "Неверный логин или пароль")
    assert b.get_cookie("kd_session") is None
    _login(b, desk_page, "op1")
    shows(b, "who", "op1 (operator)")
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
    shows(b, "note", "Выполнено терминалом")
    assert desk_page.term is not None
    p = desk_page.term.ledger.get_payment(pid)
    assert p["account"] == "9169999999" and p["reprocess_count"] == 1
    wait_for(lambda: desk_page.store.known_payment(desk_page.tid, pid) == 1, 20,
             "the re-processed record back at the desk")
    b.refresh()
    timeline = shows(b, "timeline", "Ответ терминала")
    assert "Команда отправлена" in timeline and "Ответ терминала" in timeline
    assert "reprocess: executed" in timeline and "9169999999" in timeline
    screenshot(b, "desk-payment.png", shots)
    b.get(desk_page.web.url + "/terminals")
    shows(b, "terminals", desk_page.tid)
    screenshot(b, "desk-terminals.png", shots)


def test_a_viewers_reprocess_is_refused_and_audited(b, desk_page):
    pid = _paid(desk_page)
    _login(b, desk_page, "view1")
    _open_payment(b, desk_page, pid)
    b.find_element(By.ID, "new-account").send_keys("9160000000")
    b.find_element(By.ID, "do-reprocess").click()
    shows(b, "error", "Недостаточно прав")
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
    shows(b, "error", "форма устарела")
    assert desk_page.store.statuses_sent(desk_page.tid) == [] or all(
        s["payment_id"] != pid for s in desk_page.store.statuses_sent(desk_page.tid))
    rows = Operators(desk_page.store.engine).audit_rows(target=pid)
    assert [(r["login"], r["action"], r["outcome"]) for r in rows] == [
        ("op1", "set_status", "refused")]
