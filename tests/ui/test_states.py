"""The screens a customer meets when something is not normal: the "continue?" prompt, a
printer that cannot print, a core that does not answer or is starting, a support phone
that changes, and the desk's help texts."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from kiosk.api_client import ApiClient

PHONE = "8 800 555-35-35"  # the core's (tests/core/daemon.py)
FALLBACK = "8 800 000-00-00"  # the UI's own, for a core never seen


def _to_account(d, slot: str = "provider.slot0") -> None:
    d.on("idle", timeout=20)
    d.tap("idle.start")
    d.on("provider")
    d.tap(slot)
    d.on("account")


@pytest.mark.slow  # 9-20 s on a loaded 2-core machine: not in make test-fast
def test_continue_prompt_and_timeouts(terminal_factory, make_ui):
    term = terminal_factory("[timeouts]\naccount = 2\ncash_after_bill = 2\nprompt = 6\n")
    d = make_ui(term)
    _to_account(d)
    d.until(lambda: d.visible("prompt.continue"), 10, "the continue? prompt")
    assert d.text("prompt.text") == "Вы ещё здесь? Нажмите «Продолжить»."
    assert d.text("prompt.left").startswith("Осталось")
    assert d.text("header.phone") == PHONE, "the phone stays visible over the prompt"
    d.both_languages("01-prompt")
    d.tap("prompt.continue")
    d.until(lambda: not d.visible("prompt.continue"), 5, "the prompt to go")
    assert d.ui.sm.current == "account"
    # with cash inside, an unanswered prompt finishes the payment: never dropped
    d.type_keys("account.key", "9161234567")
    d.tap("account.next")
    d.on("confirm")
    d.tap("confirm.yes")
    d.on("cash")
    term.insert(100)
    d.wait_text("cash.inserted", lambda t: t.startswith("100,00"))
    d.until(lambda: d.visible("prompt.continue"), 10, "the prompt on the cash screen")
    assert "платёж будет проведён автоматически" in d.text("prompt.text"), (
        "with cash inside the prompt says what happens if nobody answers")
    d.both_languages("02-prompt-cash")
    d.on("receipt", timeout=15)
    assert d.text("receipt.payment_id") == "T0001-00000001"
    assert term.rows("SELECT inserted_minor, note FROM payments") == [
        (10000, "customer timed out with cash inserted")]


@pytest.mark.slow  # 10-20 s on a loaded 2-core machine
def test_walk_away_below_minimum_keeps_the_cash_as_an_unclaimed_credit(terminal_factory,
                                                                      make_ui):
    """10 ₽ into MTS (minimum 50 ₽, fee 10 ₽) and nobody answers: the prompt says the cash
    will be kept under a number on a slip; then the start screen shows that number and the
    phone, and the ledger holds an unclaimed record, not a zero-credit payment."""
    term = terminal_factory("[timeouts]\ncash_after_bill = 2\nprompt = 10\n")
    d = make_ui(term)
    _to_account(d)
    d.type_keys("account.key", "9161234567")
    d.tap("account.next")
    d.on("confirm")
    d.tap("confirm.yes")
    d.on("cash")
    term.insert(10)
    d.wait_text("cash.inserted", lambda t: t.startswith("10,00"))
    d.until(lambda: d.visible("prompt.continue"), 10, "the prompt on the cash screen")
    assert "сохранена под номером, напечатанным на квитке" in d.text("prompt.text")
    assert "проведён автоматически" not in d.text("prompt.text")
    d.both_languages("03-prompt-too-little-cash")
    d.on("idle", timeout=20)
    d.wait_text("idle.notice", lambda t: "T0001-00000001" in t)
    assert "10,00 ₽" in d.text("idle.notice") and PHONE in d.text("idle.notice")
    d.both_languages("04-idle-unclaimed-notice")
    assert term.rows("SELECT kind, inserted_minor, commission_minor, credited_minor, status "
                     "FROM payments") == [("unclaimed", 1000, 0, 0, "unclaimed")]


def test_printer_warning_before_cash(terminal_factory, make_ui):
    term = terminal_factory(printer_fault="paper_out")
    d = make_ui(term)
    _to_account(d)
    d.type_keys("account.key", "9161234567")
    d.tap("account.next")
    d.on("confirm")
    d.until(lambda: d.visible("confirm.printer_warning"), 10, "the printer warning")
    assert not d.visible("confirm.yes"), "no way to cash before the customer agrees"
    assert "чек не будет напечатан" in d.text("confirm.printer_warning")
    d.both_languages("01-printer-warning")
    d.tap("confirm.no_receipt")
    d.until(lambda: d.visible("confirm.yes"), 5, "confirm after accepting")
    assert not d.visible("confirm.printer_warning")
    d.tap("confirm.yes")
    d.on("cash")
    term.insert(100)
    d.wait_text("cash.inserted", lambda t: t.startswith("100,00"))
    d.tap("cash.pay")
    d.on("receipt")
    d.wait_text("receipt.state", lambda t: "T0001-00000001" in t, timeout=30)
    assert "Запишите номер платежа" in d.text("receipt.state")
    assert PHONE in d.text("receipt.state")
    # no receipt: the check code is on the screen, to write down with the number
    code = term.rows("SELECT check_code FROM payments")[0][0]
    assert f"Код проверки: {code}" in d.text("receipt.check_code")
    # and in the notice itself, with the number and the phone, in both languages
    assert f"номер платежа T0001-00000001 и код проверки {code}" in d.text("receipt.state")
    d.tap("lang")
    english = d.text("receipt.state")
    assert f"payment number T0001-00000001 and check code {code}" in english, english
    assert PHONE in english
    d.tap("lang")
    d.both_languages("02-receipt-not-printed")
    assert term.rows("SELECT id, inserted_minor, receipt_printed_ms FROM payments") == [
        ("T0001-00000001", 10000, None)]


def test_core_unreachable_then_back(terminal_factory, make_ui):
    term = terminal_factory(start=False)
    d = make_ui(term, fallback_phone=FALLBACK, terminal_id="T0001")
    d.on("out_of_service")
    d.pump(0.5)  # retries run meanwhile
    assert FALLBACK in d.text("oos.text") and d.text("oos.phone") == FALLBACK
    assert d.text("header.phone") == FALLBACK
    assert d.text("oos.retry") == "Пробуем восстановить связь…"
    d.both_languages("01-offline-never-seen")
    term.core.start()
    d.on("idle", timeout=20)
    assert d.text("header.phone") == PHONE
    term.core.kill()  # SIGKILL: no goodbye
    d.on("out_of_service", timeout=10)
    assert d.text("oos.phone") == PHONE, "the last phone seen, not the fallback"
    assert PHONE in d.text("oos.text")
    d.both_languages("02-offline-last-seen")
    term.core.start()
    d.on("idle", timeout=20)
    d.tap("idle.start")  # the first tap after the core came back is not lost
    d.on("provider", timeout=5)


class FakeCore:
    """A stand-in that speaks the local API, for the one thing the real core cannot do
    yet on demand: change the support phone (it comes from the desk's config, issue 5)."""

    def __init__(self, path: Path, snapshot: dict) -> None:
        self.path, self.snapshot = path, snapshot
        self.subscribers: list[socket.socket] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        for line in conn.makefile("rb"):
            msg = json.loads(line)
            result: object = {}
            if msg["op"] == "hello":
                if msg.get("subscribe", True):
                    self.subscribers.append(conn)
                result = {"api": 1, "terminal_id": "T0001", "snapshot": self.snapshot}
            elif msg["op"] == "snapshot":
                result = self.snapshot
            elif msg["op"] == "catalog":
                result = {"categories": [], "providers": []}
            reply = {"v": 1, "id": msg["id"], "ok": True, "result": result}
            conn.sendall(json.dumps(reply, ensure_ascii=False).encode() + b"\n")

    def push(self, snapshot: dict) -> None:
        self.snapshot = snapshot
        data = json.dumps({"v": 1, "push": "snapshot", "snapshot": snapshot},
                          ensure_ascii=False).encode() + b"\n"
        for conn in self.subscribers:
            conn.sendall(data)

    def close(self) -> None:
        self.server.close()


def test_support_phone_change_shows_within_a_second(terminal_factory, make_ui, tmp_path):
    # the real core's idle snapshot, then the same with a new phone, pushed
    term = terminal_factory()
    with ApiClient(term.core.socket) as c:
        snap = c.connect(subscribe=False)["snapshot"]
    term.core.stop()
    starting = {**json.loads(json.dumps(snap)), "screen": "starting", "out_of_service": {
        "reasons": ["starting"], "code": "oos_starting",
        "ru": "Терминал запускается. Пожалуйста, подождите.",
        "en": "The terminal is starting. Please wait."}}
    fake = FakeCore(tmp_path / "fake.sock", starting)
    try:
        d = make_ui(None, socket=tmp_path / "fake.sock")
        d.until(lambda: d.ui.connected and d.visible("oos.title"), 10, "the starting screen")
        assert d.text("oos.title") == "Одну минуту"
        assert d.text("oos.text") == "Терминал запускается. Пожалуйста, подождите."
        d.both_languages("01-starting")
        fake.push({**snap, "seq": snap["seq"] + 1})
        d.on("idle", timeout=10)
        assert d.text("header.phone") == PHONE
        new = json.loads(json.dumps(snap))
        new["seq"] += 2
        new["terminal"]["support_phone"] = "8 800 777-00-11"
        t0 = time.monotonic()
        fake.push(new)
        d.until(lambda: d.text("header.phone") == "8 800 777-00-11", 1.0, "the new phone")
        assert time.monotonic() - t0 < 1.0
        d.shot("02-new-phone")
        assert not d.visible("idle.help"), "no help button without the desk's texts"
        helped = json.loads(json.dumps(new))
        helped["seq"] += 1
        helped["help_texts"] = {
            "how_to_pay": {"ru": "Вставляйте купюры по одной, лицевой стороной вверх.",
                           "en": "Insert bills one at a time, face up."},
            "no_change": {"ru": "Терминал не выдаёт сдачу: вся сумма без комиссии "
                                "зачисляется на счёт.",
                          "en": "The terminal gives no change: the whole amount less the "
                                "commission is credited."}}
        fake.push(helped)
        d.until(lambda: d.visible("idle.help"), 2, "the help button")
        d.both_languages("03-idle-with-help")
        d.tap("idle.help")
        d.on("help")
        assert d.text("help.text0").startswith("Вставляйте купюры по одной")
        assert d.text("help.call") == "Остались вопросы? Позвоните: 8 800 777-00-11"
        d.both_languages("04-help")
        d.tap("help.back")
        d.on("idle")
    finally:
        fake.close()
