"""Issue 15, customer screens, by touch against a real core: the terms before any cash,
a fee that would take the whole payment, a rejected-bill notice that must not reach the
receipt, the banknote being checked on a slow acceptor, "Loading…" at start, the language
of the next customer, and the paging buttons' names."""

from __future__ import annotations

from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import SimTiming
from kiosk.api_client import ApiClient

ACCOUNT = "9161234567"
# A stacker slow enough that the "checking" moment is long; nothing waits on it by time.
SLOW_STACK = SimTiming(init_s=0.05, accept_s=0.05, stack_s=5.0, return_s=0.05, reject_s=0.05)


def _to_confirm(d) -> None:
    d.on("idle", timeout=20)
    d.tap("idle.start")
    d.on("provider")
    d.tap("provider.slot0")  # MTS
    d.on("account")
    d.type_keys("account.key", ACCOUNT)
    d.tap("account.next")
    d.on("confirm")


def test_terms_before_cash_and_a_fee_that_would_take_everything(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    _to_confirm(d)
    assert d.text("confirm.fee") == (
        "Комиссия: до 500,00 ₽ — 10,00 ₽; от 500,00 ₽ — 3 %, не менее 10,00 ₽, "
        "не более 300,00 ₽")
    assert d.text("confirm.limits") == "От 50,00 ₽ до 15 000,00 ₽"
    assert d.text("confirm.notes") == (
        "Принимаются купюры: 10, 50, 100, 200, 500, 1 000, 2 000, 5 000 ₽")
    d.tap("lang")
    assert d.text("confirm.fee") == (
        "Fee: below 500.00 RUB — 10.00 RUB; from 500.00 RUB — 3 %, at least 10.00 RUB, "
        "at most 300.00 RUB")
    assert d.text("confirm.notes") == (
        "Banknotes accepted: 10, 50, 100, 200, 500, 1,000, 2,000, 5,000 RUB")
    d.tap("lang")
    d.both_languages("01-confirm-terms")
    d.tap("confirm.yes")
    d.on("cash")
    term.insert(10)
    d.wait_text("cash.inserted", lambda t: t.startswith("10,00"))
    assert d.text("cash.commission").startswith("10,00") and d.text("cash.credited") == (
        "0,00 ₽")
    assert d.find("cash.pay").disabled, "no way to pay 10 ₽ of fee for nothing"
    assert d.text("cash.status") == "Внесите ещё не меньше 40,00 ₽"
    assert "Комиссия 10,00 ₽ забрала бы всю внесённую сумму" in d.text("cash.notice")
    assert "Добавьте купюры" in d.text("cash.notice")
    d.both_languages("02-cash-fee-takes-all")
    term.insert(50)  # the acceptor still takes cash: the 10 ₽ is not lost
    d.wait_text("cash.inserted", lambda t: t.startswith("60,00"))
    d.until(lambda: not d.find("cash.pay").disabled, 5, "pay enabled")
    assert not d.visible("cash.notice")
    d.tap("cash.pay")
    d.on("receipt")
    assert term.rows("SELECT inserted_minor, commission_minor, credited_minor FROM payments"
                     ) == [(6000, 1000, 5000)]


def test_rejected_bill_notice_ends_with_the_cash_screen(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    d.tap("lang")  # this customer reads English; the next one must not inherit it
    assert d.ui.lang == "en"
    _to_confirm(d)
    d.tap("confirm.yes")
    d.on("cash")
    for rubles in (5000, 5000, 2000, 2000):
        term.insert(rubles)
    d.wait_text("cash.inserted", lambda t: t.startswith("14,000.00"))
    term.insert(2000)  # over the maximum: the acceptor has it inhibited, rejects it
    d.wait_text("cash.notice", lambda t: "not accepted" in t)
    d.shot("01-rejected-notice-en")
    term.insert(1000)  # exactly the maximum: the payment finishes by itself
    d.on("receipt", timeout=15)
    d.wait_text("receipt.state", lambda t: "receipt" in t.lower(), timeout=30)
    assert "not accepted" not in d.text("receipt.state")
    assert all("not accepted" not in t for t in d.texts().values()), d.texts()
    d.both_languages("02-receipt-no-stale-notice")
    d.tap("receipt.done")
    d.on("idle")
    assert d.ui.lang == "ru", "the next customer meets the default language"
    assert d.text("idle.start") == "Начать оплату"
    assert not d.visible("idle.notice")


def test_slow_acceptor_shows_the_banknote_being_checked(terminal_factory, make_ui,
                                                        tmp_path):
    sim = CcnetSimulator(link=tmp_path / "acceptor.pty", timing=SLOW_STACK).start()
    try:
        term = terminal_factory(f"""
[acceptor]
kind = "ccnet"
port = "{tmp_path / "acceptor.pty"}"
profile = "cashcode_sm"
""")
        d = make_ui(term)
        _to_confirm(d)
        d.tap("confirm.yes")
        d.on("cash")
        with ApiClient(term.core.socket, timeout=10) as client:
            client.connect(subscribe=True)
            client.wait_for(lambda s: 10000 in ((s.get("session") or {}).get(
                "accepted_notes_minor") or []), timeout=20)
            sim.command("insert 100")
            snap = client.wait_for(lambda s: (s.get("session") or {}).get("escrow"),
                                   timeout=20)
            assert sim.counters.stacked == 0, "escrow was published before stacking"
            assert snap["session"]["escrow"] == {"amount_minor": 10000, "currency": "RUB"}
            assert snap["session"]["inserted_minor"] == 0  # nothing credited yet (M1)
        text = d.wait_text("cash.status", lambda t: t.startswith("Проверяем купюру…"))
        assert sim.counters.stacked == 0, "the screen said so before the bill was stacked"
        assert text == "Проверяем купюру… 100,00 ₽"
        d.tap("lang")
        assert d.text("cash.status") == "Checking the banknote… 100.00 RUB"
        d.tap("lang")
        d.shot("03-checking-banknote")
        d.wait_text("cash.inserted", lambda t: t.startswith("100,00"), timeout=30)
        assert not d.text("cash.status").startswith("Проверяем")
        assert sim.counters.stacked == 1
    finally:
        sim.stop()


def test_loading_first_then_idle_language_and_paging_names(terminal_factory, make_ui):
    term = terminal_factory(start=False)
    d = make_ui(term, check_idle_s=2.0)
    oos = d.ui.screens["out_of_service"]
    # the first frame, before any snapshot or failed attempt: neutral, not "out of service"
    assert d.ui.sm.current == "out_of_service"
    assert oos.head.text == "Загрузка…" and oos.text.text == ""
    d.until(lambda: d.ui.link_failed, 10, "the first failed attempt")
    assert d.text("oos.title") == "Терминал не работает"  # then the honest fallback
    term.core.start()
    d.on("idle", timeout=20)
    # someone switches to English on the start screen and walks away
    d.tap("lang")
    assert d.ui.lang == "en"
    d.until(lambda: d.ui.lang == "ru", 10, "the language back to the default")
    assert d.text("idle.start") == "Начать оплату"
    # page 2 of the providers: paging and leaving have different names
    d.tap("idle.start")
    d.on("provider")
    d.tap("provider.next")
    d.until(lambda: d.visible("provider.prev"), 5, "page 2")
    assert d.text("provider.prev") == "Предыдущие" and d.text("provider.back") == "Назад"
    d.both_languages("04-provider-page-2")


FAST = SimTiming(init_s=0.05, accept_s=0.05, stack_s=0.05, return_s=0.05, reject_s=0.05)


def test_unclaimed_credit_notice_in_the_ui_money_format_then_gone(terminal_factory, make_ui,
                                                                  tmp_path):
    """A note the unit stacks while nobody pays (power came back with it in the stacker):
    an unclaimed credit, announced on the start screen with the amount in the UI's own
    format, and gone before the next stranger comes (after timeouts.receipt)."""
    sim = CcnetSimulator(link=tmp_path / "acceptor.pty", timing=FAST).start()
    try:
        term = terminal_factory(f"""
[acceptor]
kind = "ccnet"
port = "{tmp_path / "acceptor.pty"}"
profile = "cashcode_sm"
[timeouts]
receipt = 6
""")
        d = make_ui(term)
        d.on("idle", timeout=20)
        d.until(lambda: d.ui.snap and d.ui.snap["acceptor"]["status"] == "disabled", 20,
                "the acceptor settled")
        sim.command("power_cycle stacker 500")
        text = d.wait_text("idle.notice", lambda t: "сохранены под номером" in t, timeout=30)
        assert text.startswith("Внесённые 500,00 ₽ сохранены под номером T0001-"), text
        assert "руб." not in text and "RUB" not in text
        d.tap("lang")
        assert d.text("idle.notice").startswith("The 500.00 RUB you inserted is recorded as")
        d.shot("05-unclaimed-notice-en")
        d.tap("lang")
        d.until(lambda: not d.visible("idle.notice"), 20, "the notice to expire")
        assert term.rows("SELECT kind, inserted_minor FROM payments") == [("unclaimed", 50000)]
    finally:
        sim.stop()
