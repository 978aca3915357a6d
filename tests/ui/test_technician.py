"""Technician mode by touch against a real core: the hidden gesture, the PIN and its
lockout, status, encashment with its printed report, events, test print, service mode,
and the mode closing itself when left alone."""

from __future__ import annotations

import json
import re

import pytest

from kiosk.api_client import ApiClient, ApiRequestError
from kiosk.scripted import inbox_feeder, run_payment

PIN = "1234"  # the demo PIN whose hash tests/core/daemon.py writes


def _gesture(d, taps: int = 5) -> None:
    for _ in range(taps):
        d.tap("tech.corner")


def _login(d, pin: str = PIN) -> None:
    d.tap("tech.key.clear")
    d.type_keys("tech.key", pin)
    d.tap("tech.login")


def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s


def _failed_logins(term) -> list[str]:
    rows = term.rows("SELECT data FROM events WHERE kind = 'technician_login_failed' "
                     "ORDER BY id")
    return [json.loads(r[0])["code"] for r in rows]


@pytest.mark.slow  # 9-20 s on a loaded 2-core machine: not in make test-fast
def test_hidden_gesture_and_pin_lockout(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    _gesture(d, taps=4)
    d.pump(0.3)
    assert d.ui.sm.current == "idle", "four taps are not the gesture"
    d.pump(3.2)  # the taps age out of the window
    _gesture(d, taps=1)
    assert d.ui.sm.current == "idle"
    _gesture(d, taps=4)
    d.on("tech_pin")
    d.both_languages("01-pin")
    for attempt in range(1, 5):
        _login(d, "0000")
        d.wait_text("tech.message",
                    lambda t, n=5 - attempt: t == f"Неверный PIN. Осталось попыток: {n}")
    d.tap("lang")  # the refusal is worded by the UI, in the language shown
    d.wait_text("tech.message", lambda t: t == "Wrong PIN. Attempts left: 1")
    d.tap("lang")
    _login(d, "0000")
    d.wait_text("tech.message", lambda t: t.startswith(
        "Вход заблокирован после неверных PIN. Повторите после "))
    d.both_languages("02-locked")
    until = d.text("tech.message").rsplit(" ", 1)[1]
    _login(d, PIN)  # even the right PIN is refused while locked, until the same time
    d.until(lambda: len(_failed_logins(term)) == 6 and not d.ui.sm.current_screen.waiting,
            5, "the sixth try refused")
    assert d.text("tech.message").startswith("Вход заблокирован")
    assert d.ui.sm.current == "tech_pin"
    assert abs(_seconds(d.text("tech.message").rsplit(" ", 1)[1]) - _seconds(until)) <= 2
    assert not re.search("[A-Za-z]{3,}", d.text("tech.message").replace("PIN", "")), (
        "no English on a Russian screen")
    # the core recorded every failure as an event for the desk
    assert _failed_logins(term) == ["wrong_pin"] * 4 + ["locked", "locked"]
    d.tap("tech.exit")
    d.on("idle")


@pytest.mark.slow  # 9-20 s on a loaded 2-core machine: not in make test-fast
def test_encashment_actions_and_service_mode(terminal_factory, make_ui):
    term = terminal_factory()
    with ApiClient(term.core.socket) as c:
        c.connect()
        paid = run_payment(c, "mts", "9161234567", [500, 100], inbox_feeder(term.core.inbox))
    assert paid["inserted_minor"] == 60000
    d = make_ui(term)
    d.on("idle", timeout=20)
    _gesture(d)
    d.on("tech_pin")
    _login(d)
    d.on("tech")
    d.wait_text("tech.st.cassette", lambda t: "купюр: 2" in t and "600,00" in t)
    assert d.text("tech.st.service") == "да"
    assert "не отправлено платежей: 1" in d.text("tech.st.queue")
    assert d.text("tech.st.phone") == "8 800 555-35-35"
    d.both_languages("01-status")

    d.tap("tech.tab.counters")
    d.wait_text("tech.cnt.total", lambda t: "купюр: 2" in t)
    assert d.text("tech.cnt.rows").splitlines() == ["100,00 ₽ × 1 = 100,00 ₽",
                                                    "500,00 ₽ × 1 = 500,00 ₽"]
    receipts_before = len(term.printer.receipts)
    d.tap("tech.encash")
    d.wait_text("tech.encash_confirm", lambda t: "купюр: 2" in t)
    d.both_languages("02-encash-confirm")
    d.tap("tech.encash_yes")
    d.wait_text("tech.result", lambda t: t.startswith("Инкассация №1"), timeout=30)
    assert "Отчёт напечатан" in d.text("tech.result")
    d.wait_text("tech.cnt.rows", lambda t: t == "Кассета пуста")
    assert "купюр: 0" in d.text("tech.cnt.total")
    d.both_languages("03-encashed")
    assert term.printer.wait_for_receipts(receipts_before + 1, timeout=10)
    assert "ИНКАССАЦИЯ" in term.printer.receipts[-1] and "600" in term.printer.receipts[-1]
    assert term.rows("SELECT count(*) FROM cassette WHERE count > 0") == [(0,)]
    assert term.rows("SELECT bill_count, total_minor FROM encashments") == [(2, 60000)]

    d.tap("tech.tab.events")
    d.wait_text("tech.events", lambda t: "инкассация · encashment" in t)
    d.both_languages("04-events")

    d.tap("tech.tab.actions")
    d.until(lambda: d.visible("tech.service") and not d.find("tech.service").disabled)
    # acceptor test: the bill is read and given back, the ledger does not move (M1, M3)
    stacked_before = term.rows("SELECT count(*) FROM stacked_bills")
    d.tap("tech.acceptor_test")
    d.wait_text("tech.acceptor_test_state", lambda t: t.startswith("Прочитано купюр: 0"))
    inbox_feeder(term.core.inbox)(500)

    def seen_one() -> bool:
        d.tap("tech.refresh")
        d.pump(0.3)
        return d.text("tech.acceptor_test_state").startswith("Прочитано купюр: 1")

    d.until(seen_one, 15, "the test bill shows as read")
    assert "500,00" in d.text("tech.acceptor_test_state") and "возвращены" in d.text(
        "tech.acceptor_test_state")
    d.tap("tech.acceptor_test")  # end the test
    d.until(lambda: d.text("tech.acceptor_test_state") == "" and d.text("tech.acceptor_test")
            == "Тест купюроприёмника", 10, "the test ended")
    assert term.rows("SELECT count(*) FROM stacked_bills") == stacked_before
    assert term.rows("SELECT count(*) FROM escrows WHERE amount_minor = 50000 AND "
                     "state = 'pending'") == [(0,)]
    d.tap("tech.test_print")
    d.wait_text("tech.result", lambda t: t == "Тестовая страница напечатана", timeout=30)
    assert "ТЕСТ ПРИНТЕРА" in term.printer.receipts[-1]
    d.both_languages("05-actions")
    d.tap("tech.service")  # out of service for maintenance
    d.wait_text("tech.service_state", lambda t: t == "Терминал выведен из работы")
    d.tap("tech.exit")
    d.on("out_of_service")
    # the customer sees the core's customer text and whom to call, not the reason
    assert d.text("oos.text").startswith("Идёт обслуживание терминала")
    assert "technician service mode" not in json.dumps(d.texts(), ensure_ascii=False)
    d.both_languages("06-oos-service")
    _gesture(d)  # the corner works on the out-of-service screen too
    d.on("tech_pin")
    _login(d)
    d.on("tech")
    d.tap("tech.tab.actions")
    d.wait_text("tech.service_state", lambda t: t == "Терминал выведен из работы")
    d.tap("tech.service")
    d.wait_text("tech.service_state", lambda t: t == "Терминал в работе")
    d.tap("tech.exit")
    d.on("idle")


def test_hold_gesture_and_technician_mode_closes_itself(terminal_factory, make_ui):
    from kivy.base import EventLoop

    from tests.ui.harness import Finger
    from ui.config import Gesture

    term = terminal_factory()
    d = make_ui(term, tech_idle_s=1.5, gesture=Gesture.parse("top-right:hold:1"))
    d.on("idle", timeout=20)
    corner = d.find("tech.corner")
    x, y = corner.to_window(*corner.center)
    assert x > d.ui.root.width / 2, "the corner is the configured one"
    finger = Finger(x, y)
    EventLoop.post_dispatch_input("begin", finger)
    d.pump(0.5)
    EventLoop.post_dispatch_input("end", finger)  # let go too early: nothing
    d.pump(1.0)
    assert d.ui.sm.current == "idle"
    finger = Finger(x, y)
    EventLoop.post_dispatch_input("begin", finger)
    d.pump(1.3)
    EventLoop.post_dispatch_input("end", finger)
    d.on("tech_pin")
    _login(d)
    d.on("tech")
    token = d.ui.tech.token
    assert token
    d.on("idle", timeout=6)
    assert d.ui.tech.token is None
    d.pump(0.3)
    with ApiClient(term.core.socket) as c:
        c.connect(subscribe=False)
        with pytest.raises(ApiRequestError) as err:
            c.request("tech.counters", token=token)
    assert err.value.code == "not_authorized", "the UI logged the session out"
