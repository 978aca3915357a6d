"""The customer flow by touch against a real core: widget tree, screenshots, ledger.

Every step is a touch on a visible widget (tests/ui/harness.py), every screen is checked
for clipped text and small targets and photographed in Russian and English, and the
outcome is read back from the core: the `payments` op and the ledger file itself.
"""

from __future__ import annotations

import json

import pytest

from kiosk.api_client import ApiClient

ACCOUNT = "9161234567"


def _payments(term) -> list[dict]:
    with ApiClient(term.core.socket) as c:
        c.connect(subscribe=False)
        return c.request("payments", limit=10)


@pytest.mark.slow  # 9-20 s on a loaded 2-core machine: not in make test-fast
def test_pay_by_touch_end_to_end(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    assert d.text("header.phone") == "8 800 555-35-35"
    assert d.text("header.terminal") == "T0001"
    d.both_languages("01-idle")

    d.tap("idle.start")
    d.on("provider")
    d.both_languages("02-provider")
    d.tap("provider.cat.mobile")
    assert [d.text(f"provider.slot{i}") for i in range(4)] == ["МТС", "Билайн", "МегаФон",
                                                              "Tele2"]
    assert not d.visible("provider.slot4")
    d.tap("provider.slot0")  # МТС

    d.on("account")
    assert d.text("account.number") == "+7 (___) ___-__-__"
    assert d.find("account.next").disabled
    d.type_keys("account.key", "91612345")
    d.tap("account.key.back")
    d.type_keys("account.key", "567")
    assert d.text("account.number") == "+7 (916) 123-45-67"
    d.until(lambda: (d.ui.session or {}).get("account") == ACCOUNT, what="set_account")
    d.both_languages("03-account")
    d.tap("account.next")

    d.on("confirm")
    assert d.text("confirm.number") == "+7 (916) 123-45-67"
    assert d.text("confirm.provider") == "МТС"
    assert not d.visible("confirm.printer_warning")
    d.both_languages("04-confirm")
    d.tap("confirm.yes")

    d.on("cash")
    assert d.text("cash.inserted") == "0,00 ₽"
    assert d.find("cash.pay").disabled and d.visible("cash.cancel")
    d.both_languages("05-cash-empty")
    term.insert(500)
    d.wait_text("cash.inserted", lambda t: t == "500,00 ₽")
    assert not d.visible("cash.cancel"), "no cancel once money is inside"
    term.insert(100)
    d.wait_text("cash.inserted", lambda t: t == "600,00 ₽")
    session = d.ui.session
    assert session["commission_minor"] == 1800 and session["credited_minor"] == 58200
    assert d.text("cash.commission") == "18,00 ₽"
    assert d.text("cash.credited") == "582,00 ₽"
    d.both_languages("06-cash-600")
    term.printer.set_slow(3.0)  # ms per byte: long enough to see "printing"
    d.tap("cash.pay")

    d.on("receipt")
    assert d.text("receipt.state") == "Печатаем чек…"
    d.both_languages("07-receipt-printing")
    term.printer.set_slow(0)
    d.wait_text("receipt.state", lambda t: t.startswith("Заберите чек"), timeout=20)
    payment_id = d.text("receipt.payment_id")
    assert payment_id == "T0001-00000001"
    d.both_languages("08-receipt")
    assert term.printer.wait_for_receipts(1, timeout=10)
    assert payment_id in term.printer.receipts[-1]

    # the ledger: exactly one payment, as the screen said
    rows = _payments(term)
    assert len(rows) == 1
    p = rows[0]
    assert (p["id"], p["provider_id"], p["account"]) == (payment_id, "mts", ACCOUNT)
    assert (p["inserted_minor"], p["commission_minor"], p["credited_minor"]) == (
        60000, 1800, 58200)
    cassette = term.rows("SELECT amount_minor, count FROM cassette WHERE count > 0 "
                         "ORDER BY amount_minor")
    assert cassette == [(10000, 1), (50000, 1)]

    d.tap("receipt.done")
    d.on("idle")

    # "check my payment" with the number and check code from the receipt
    code = term.rows("SELECT check_code FROM payments WHERE id = ?", payment_id)[0][0]
    assert code in term.printer.receipts[-1]
    d.tap("idle.check")
    d.on("check")
    d.both_languages("09-check-empty")
    d.type_keys("check.key", "1")
    assert d.text("check.number") == "T0001-1"
    d.tap("check.code")
    d.type_keys("check.key", code)
    d.tap("check.go")
    d.wait_text("check.status", lambda t: t.startswith(payment_id))
    assert "Принят терминалом" in d.text("check.status")
    assert "…4567" in d.text("check.details") and "582,00" in d.text("check.details")
    d.both_languages("10-check-found")
    d.tap("check.number")
    d.tap("check.key.clear")
    d.type_keys("check.key", "77")
    d.tap("check.go")
    d.wait_text("check.status", lambda t: "не найден" in t)
    d.both_languages("11-check-not-found")
    d.tap("check.back")
    d.on("idle")


@pytest.mark.slow  # 9-20 s on a loaded 2-core machine: not in make test-fast
def test_search_back_and_cancel(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    d.tap("idle.start")
    d.on("provider")
    d.tap("provider.next")
    assert d.text("provider.slot0") == "Мосэнергосбыт"
    d.tap("provider.prev")
    d.tap("provider.search")
    assert d.text("provider.query") == "Наберите название"
    d.type_keys("kb", "ДОМ")
    assert d.text("provider.query") == "ДОМ"
    assert d.text("provider.hit0") == "Дом.ру" and not d.visible("provider.hit1")
    d.both_languages("01-search-ru-keys")
    d.tap("kb.clear")
    d.tap("kb.layout")  # Latin letters find the English names too
    d.type_keys("kb", "ROST")
    assert d.text("provider.hit0") == "Ростелеком — интернет"
    d.tap("kb.clear")
    d.type_keys("kb", "QQ")
    assert d.text("provider.hit0") == "Ничего не найдено"
    assert d.find("provider.hit0").disabled
    d.both_languages("02-search-nothing")
    d.tap("kb.back")
    d.tap("kb.back")
    d.type_keys("kb", "MEG")
    d.tap("provider.hit0")
    d.on("account")
    assert d.ui.session["provider"]["id"] == "megafon"
    d.tap("account.back")
    d.on("provider")
    d.tap("provider.back")
    d.on("idle")
    # cancel from the confirmation screen
    d.tap("idle.start")
    d.on("provider")
    d.tap("provider.slot5")  # Дом.ру: mask "** ********"
    d.on("account")
    assert d.text("account.number") == "__ ________"
    d.type_keys("account.key", "1234567890")
    d.tap("account.next")
    d.on("confirm")
    assert d.text("confirm.number") == "12 34567890"
    d.tap("confirm.change")
    d.on("account")
    assert d.text("account.number") == "12 34567890", "the digits survive going back"
    d.tap("account.next")
    d.on("confirm")
    d.tap("confirm.cancel")
    d.on("idle")
    assert term.rows("SELECT count(*) FROM payments") == [(0,)]
    assert json.dumps(d.ui.snap["session"]) == "null"
