"""The four complaint stories a call center hears, end to end.

Each story is one customer's call: a real terminal core (PaymentEngine, SQLite ledger,
SyncAgent) with the real ESC/POS driver on a PrinterSimulator behind a pseudo-terminal
(the bill acceptor is the engine-level double: the stories need no acceptor fault), its
local API on a Unix socket (what the touchscreen's "check my payment" and the
technician's menu use, through kiosk.api_client.ApiClient), a real mosquitto, a desk
worker on SQLite serving the operator's page, and Debian's chromium in which the
operator does their part. Each story ends with what the customer sees and what the
desk's audit trail says (who did what).
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select

from drivers.acceptor import EscrowDecision, StackOrigin
from drivers.escpos.printer import EscposPrinter
from drivers.profiles import load_profiles
from drivers.sim.printer import Fault, PrinterSimulator, SimConfig
from kiosk.api_client import ApiClient
from kiosk.api_server import ApiServer
from kiosk.engine import PaymentEngine
from sync.desk_service.operators import Operators
from tests.desk.browser import login, search, shows
from tests.desk.web import DeskPage, page_for
from tests.sync.conftest import wait_for
from tests.sync.terminal import MTS_ACCOUNT, LiveTerminal, live_terminal, mqtt_config

PRINTER_PROFILE = "custom_vkp80iii"  # full status: the driver sees paper run out mid-receipt
TECH_PIN = "1234"  # the demo technician PIN of tests' configs (DEMO_PIN_HASH)
RIGHT_ACCOUNT = "9169999999"
WAIT_S = 20.0
FINAL = ("processed", "failed")  # the statuses only the desk sets
SLOW_PRINT_MS_PER_BYTE = 5.0  # a receipt takes seconds: paper can run out in the middle


class LocalApi:
    """The core's local API server (kiosk/api_server.py) on its own event loop thread,
    as the daemon runs it: the customer's screen and the technician reach the engine
    only through this socket."""

    def __init__(self, engine: PaymentEngine, path: Path) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ApiServer(engine, path)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(WAIT_S)

    def client(self) -> ApiClient:
        c = ApiClient(self.path)
        c.connect(subscribe=True, client="story")
        return c

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(WAIT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_S)
        self.loop.close()


def check_my_payment(api: LocalApi, payment_id: str, code: str) -> dict[str, Any]:
    """What the terminal's "check my payment" screen shows for the number and check code
    typed (both are on the receipt; an id alone shows nothing)."""
    with api.client() as c:
        return c.request("payment_status", payment_id=payment_id, check_code=code)


def code_on_paper(printed: str) -> str:
    """The check code as the customer reads it off the receipt or slip."""
    found = re.search(r"Код проверки / Check code\s+(\d{6})", printed)
    assert found, printed
    return found.group(1)


@dataclass
class Story:
    """One terminal with a real printer, its desk and page, and its local API."""

    tmp: Path
    term: LiveTerminal
    sim: PrinterSimulator
    page: DeskPage
    api: LocalApi
    mqtt: Any

    @property
    def tid(self) -> str:
        return self.term.config.terminal.id

    def audit(self, target: str) -> list[tuple[str, str, str]]:
        """The desk's audit trail about `target`, oldest first: (login, action, outcome)."""
        rows = Operators(self.page.store.engine).audit_rows(target=target)
        return [(r["login"], r["action"], r["outcome"]) for r in reversed(rows)]

    def at_desk(self, pid: str, count: int = 0) -> None:
        wait_for(lambda: self.page.store.known_payment(self.tid, pid) == count, WAIT_S,
                 f"{pid} (re-processed {count}x) at the desk")

    def restart(self) -> None:
        """The core process starts again on the same ledger, keys and printer (after a
        freeze: the old one is gone; whatever it left open is reconciled at start, M6)."""
        self.api.stop()
        self.term.stop()
        self.term = live_terminal(self.tmp / "t", self.tid, self.mqtt,
                                  printer=new_printer(self.sim))
        self.page.term = self.term
        self.api = LocalApi(self.term.engine, self.term.config.paths.socket)


def new_printer(sim: PrinterSimulator) -> EscposPrinter:
    return EscposPrinter(load_profiles()[PRINTER_PROFILE], sim.path)


@pytest.fixture
def story(tmp_path: Path, broker: Any, desk_key: Any) -> Iterator[Story]:
    sim = PrinterSimulator(SimConfig.from_profile(load_profiles()[PRINTER_PROFILE]),
                           receipts_dir=tmp_path / "receipts").start()
    tid = "S" + uuid.uuid4().hex[:8].upper()
    mqtt = mqtt_config(broker.port, desk_key)
    term = live_terminal(tmp_path / "t", tid, mqtt, printer=new_printer(sim))
    page = page_for(term, tmp_path / "desk.sqlite", broker, desk_key)
    s = Story(tmp_path, term, sim, page, LocalApi(term.engine, term.config.paths.socket), mqtt)
    yield s
    s.sim.set_slow(0)
    s.api.stop()
    s.page.stop()  # the desk, the page and the terminal
    s.sim.stop()


@pytest.fixture
def b(browser: WebDriver) -> WebDriver:
    """The operator's browser, logged out."""
    browser.delete_all_cookies()
    return browser


def open_payment(b: WebDriver, s: Story, typed: str, pid: str) -> None:
    """The operator types what the customer reads out and opens the payment."""
    search(b, s.page, typed, pid)
    b.find_element(By.LINK_TEXT, pid).click()
    shows(b, "timeline", "Запись получена от терминала")


def reprocess_in_browser(b: WebDriver, account: str, reason: str,
                         provider: str | None = None) -> str:
    if provider is not None:
        field = b.find_element(By.ID, "provider")
        field.clear()
        field.send_keys(provider)
    b.find_element(By.ID, "new-account").send_keys(account)
    b.find_element(By.ID, "reason").send_keys(reason)
    b.find_element(By.ID, "do-reprocess").click()
    return shows(b, "note", "")


def set_status_in_browser(b: WebDriver, status: str, detail: str) -> str:
    Select(b.find_element(By.ID, "status")).select_by_value(status)
    b.find_element(By.ID, "detail").send_keys(detail)
    b.find_element(By.ID, "do-status").click()
    return shows(b, "note", "Отправлено")


def wait_status(api: LocalApi, pid: str, code: str, pred: Callable[[dict[str, Any]], bool],
                what: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def ok() -> bool:
        seen.update(check_my_payment(api, pid, code))
        return pred(seen)

    wait_for(ok, WAIT_S, what)
    return dict(seen)


# -- 1. wrong number -------------------------------------------------------------------
def test_wrong_number_reprocessed_from_what_the_receipt_says(story, b):
    """The customer typed 916 123-45-67 instead of 916 999-99-99 and calls with the
    receipt in hand: the payment is found by the number as printed on it, re-processed
    to the right account, and the terminal's "check my payment" shows the new account's
    last digits (all the terminal ever shows of an account)."""
    s = story
    pid = s.term.pay(500, account=MTS_ACCOUNT)
    s.sim.wait_for_receipts(1, timeout=WAIT_S)
    receipt = s.sim.receipts[-1]
    assert pid in receipt and "+7 (916) 123-45-67" in receipt  # what the customer reads
    code = code_on_paper(receipt)
    before = check_my_payment(s.api, pid, code)
    assert before["account_tail"] == MTS_ACCOUNT[-4:]
    s.at_desk(pid)

    login(b, s.page, "op1")
    open_payment(b, s, "+7 (916) 123-45-67", pid)  # the account as printed
    # the caller reads the check code out: they hold the receipt
    assert b.find_element(By.ID, "f-check_code").text == code
    note = reprocess_in_browser(b, "8 916 999-99-99", "клиент ошибся номером")
    assert "Выполнено терминалом" in note
    # the customer's other way in: the payment number off the receipt
    open_payment(b, s, pid.lower(), pid)
    assert b.find_element(By.ID, "f-account").text == RIGHT_ACCOUNT

    after = wait_status(s.api, pid, code, lambda p: p["account_tail"] == RIGHT_ACCOUNT[-4:],
                        "the new account at the terminal")
    assert after["status"] == "reprocessed"
    assert after["inserted_minor"] == 50_000 and after["credited_minor"] == before[
        "credited_minor"]
    assert s.term.ledger.get_payment(pid)["reprocess_count"] == 1
    s.at_desk(pid, count=1)
    assert s.audit(pid) == [("op1", "reprocess", "executed")]


# -- 2. no receipt ---------------------------------------------------------------------
def test_no_receipt_the_payment_is_confirmed_and_reprinted_after_paper_is_loaded(story, b):
    """Paper ran out in the middle of the receipt. The money is in the ledger and the
    screen told the customer the payment number and the support phone; the operator
    finds it by that number and confirms it (status "processed"); once a technician has
    loaded paper, a copy of the receipt is printed at the terminal.

    The technician's `tech.reprint` prints a copy; so does the customer's own
    `customer_reprint` from "check my payment", with the number and check code they
    wrote down from the screen (the same reprint path, kiosk/service.py)."""
    s = story
    e = s.term.engine
    with s.api.client() as screen:
        e.intent("select_provider", {"provider_id": "mts"})
        e.intent("submit_account", {"account": MTS_ACCOUNT})
        e.intent("confirm_account", {})
        assert s.term.acceptor.insert(500) is EscrowDecision.STACK
        s.sim.set_slow(SLOW_PRINT_MS_PER_BYTE)
        e.intent("pay", {})
        wait_for(lambda: s.sim.printing, WAIT_S, "the receipt reaching the printer")
        s.sim.set_fault(Fault.PAPER_OUT)
        s.term.drain_printer()
        shown = screen.wait_for(
            lambda snap: (snap.get("notice") or {}).get("code") == "receipt_failed", WAIT_S)
    s.sim.set_slow(0)
    assert s.sim.receipts == []  # nothing came out
    pid = shown["last_payment"]["payment_id"]
    assert shown["last_payment"]["receipt"] == "failed"
    # what the customer writes down from the screen: the number, its check code (the
    # receipt screen shows it) and whom to call
    assert pid in shown["notice"]["ru"] and s.term.config.terminal.support_phone in shown[
        "notice"]["ru"]
    code = shown["last_payment"]["check_code"]
    e.intent("done", {})
    s.at_desk(pid)

    login(b, s.page, "op1")
    open_payment(b, s, pid, pid)
    assert b.find_element(By.ID, "f-status").text not in FINAL
    assert "receipt_not_printed" in b.find_element(By.ID, "timeline").text
    set_status_in_browser(b, "processed", "платёж подтверждён, чек не напечатан")
    assert b.find_element(By.ID, "f-check_code").text == code
    confirmed = wait_status(s.api, pid, code, lambda p: p["status"] == "processed",
                            "the desk's confirmation at the terminal")
    assert confirmed["inserted_minor"] == 50_000

    s.sim.clear()  # the technician loads paper
    with s.api.client() as tech:
        token = tech.request("tech.login", pin=TECH_PIN)["token"]
        assert tech.request("tech.reprint", token=token, payment_id=pid) == {
            "payment_id": pid, "printed": True}
    assert s.sim.wait_for_receipts(1, timeout=WAIT_S)
    copy = s.sim.receipts[-1]
    assert pid in copy and "+7 (916) 123-45-67" in copy and code_on_paper(copy) == code
    with s.api.client() as customer:  # the customer's own copy, from "check my payment"
        assert customer.request("customer_reprint", payment_id=pid, check_code=code) == {
            "payment_id": pid, "printed": True}
    assert s.sim.wait_for_receipts(2, timeout=WAIT_S)
    assert "КОПИЯ / COPY" in s.sim.receipts[-1] and pid in s.sim.receipts[-1]
    assert s.audit(pid) == [("op1", "set_status", "sent")]


# -- 3. not credited -------------------------------------------------------------------
def test_not_credited_the_desks_status_reaches_check_my_payment(story, b):
    """The provider did not credit the payment: the operator marks it failed with the
    reason; the terminal's "check my payment" shows "failed" (and the reason)."""
    s = story
    pid = s.term.pay(1000)
    assert s.sim.wait_for_receipts(1, timeout=WAIT_S)
    code = code_on_paper(s.sim.receipts[-1])
    s.at_desk(pid)
    assert check_my_payment(s.api, pid, code)["status"] not in FINAL

    login(b, s.page, "op1")
    open_payment(b, s, "123-45-67", pid)  # the last digits the customer remembers
    set_status_in_browser(b, "failed", "провайдер отклонил платёж")
    failed = wait_status(s.api, pid, code, lambda p: p["status"] == "failed",
                         "the desk's status at the terminal")
    assert failed["status_detail"] == "провайдер отклонил платёж"
    assert s.term.ledger.get_payment(pid)["status_detail"] == "провайдер отклонил платёж"
    b.refresh()
    assert "failed" in shows(b, "timeline", "Статус отправлен на терминал")
    assert s.audit(pid) == [("op1", "set_status", "sent")]


# -- 4. froze with money inside --------------------------------------------------------
def test_froze_with_money_inside_the_slip_number_leads_to_the_money_credited_once(story, b):
    """The customer's bill went in and the terminal froze before it was counted. At the
    restart the session is closed without a payment and the bill the acceptor reports
    from its stacker becomes an unclaimed credit with a printed slip. The customer reads
    the slip's number; the operator finds the money by it and re-processes it to the
    account; sending the same action again credits nothing more."""
    s = story
    e = s.term.engine
    e.intent("select_provider", {"provider_id": "mts"})
    e.intent("submit_account", {"account": MTS_ACCOUNT})
    e.intent("confirm_account", {})
    assert s.term.acceptor.escrow(500) is EscrowDecision.STACK  # in, never reported
    s.restart()  # the frozen core is gone; a new one reconciles the open session (M6)
    s.term.acceptor.report_stacked(500, origin=StackOrigin.POWER_UP)
    s.term.drain_printer()
    unclaimed = [p for p in s.term.ledger.list_payments(10) if p["kind"] == "unclaimed"]
    assert [(p["inserted_minor"], p["status"]) for p in unclaimed] == [(50_000, "unclaimed")]
    rid = unclaimed[0]["id"]
    assert [p for p in s.term.ledger.list_payments(10) if p["kind"] == "payment"] == []
    assert s.sim.wait_for_receipts(1, timeout=WAIT_S)
    assert rid in s.sim.receipts[-1]  # the slip the customer keeps
    slip_code = code_on_paper(s.sim.receipts[-1])
    s.at_desk(rid)

    login(b, s.page, "op1")
    open_payment(b, s, rid, rid)
    assert b.find_element(By.ID, "f-kind").text == "unclaimed"
    note = reprocess_in_browser(b, "+7 916 123-45-67", "клиент: терминал завис",
                                provider="mts")
    assert "Выполнено терминалом" in note
    # the operator is unsure it went through and presses again: nothing more is credited
    open_payment(b, s, rid, rid)
    again = reprocess_in_browser(b, "+7 916 123-45-67", "повтор", provider="mts")
    assert "Уже было выполнено" in again

    payments = [p for p in s.term.ledger.list_payments(10) if p["kind"] == "payment"]
    assert len(payments) == 1
    pid = payments[0]["id"]
    assert payments[0]["inserted_minor"] == 50_000 and payments[0]["account"] == MTS_ACCOUNT
    record = s.term.ledger.get_payment(rid)  # re-processed once, into that one payment
    assert (record["status"], record["reprocess_count"], record["status_detail"]) == (
        "reprocessed", 1, pid)
    s.at_desk(pid)
    s.at_desk(rid, count=1)
    # the new payment was made at the desk: no paper carries its code; the operator reads
    # it from the payment's page to the customer
    open_payment(b, s, pid, pid)
    code = b.find_element(By.ID, "f-check_code").text
    seen = check_my_payment(s.api, pid, code)
    assert seen["account_tail"] == MTS_ACCOUNT[-4:] and seen["inserted_minor"] == 50_000
    slip = check_my_payment(s.api, rid, slip_code)  # the customer types the slip's number
    assert slip["kind"] == "unclaimed" and slip["status"] == "reprocessed"
    assert slip["status_detail"] == pid  # where the money went
    assert s.audit(rid) == [("op1", "reprocess_unclaimed", "executed"),
                            ("op1", "reprocess_unclaimed", "again")]
