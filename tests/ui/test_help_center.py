"""The help center and proactive help by touch against a real core (docs/self-service.md):
articles found by a misspelled search, the phone under every article, the counters in the
ledger's events (queued for the desk); a stuck customer gets the overlay and a call-back
request is recorded with its help code and the session's context."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.config_files import SUPPORT_PHONE
from tests.ui.test_layout import _ui, panel  # noqa: F401  (the panel fixture)


def _help_events(term: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(k, json.loads(d)) for k, d in term.rows(
        "SELECT kind, data FROM events WHERE kind LIKE 'help_%' ORDER BY id")]


def _queued_for_desk(term: Any) -> int:
    return term.rows("SELECT count(*) FROM outbox WHERE kind = 'event'")[0][0]


@pytest.mark.slow
def test_help_center_search_article_and_counters(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    d.until(lambda: d.ui.help_center is not None, what="the help center")
    d.tap("idle.help")
    d.on("help")
    assert d.text("help.top0") == "Деньги внутри, а платёж не прошёл"
    d.both_languages("01-home")
    d.tap("help.top0")
    assert d.text("help.title") == "Деньги внутри, а платёж не прошёл"
    assert d.text("help.article.phone") == f"Телефон поддержки: {SUPPORT_PHONE}"
    d.wait_text("help.article.code", lambda t: t.startswith("Код помощи: T0001-"))
    d.both_languages("02-article")
    d.tap("help.back")
    # a misspelled search on the on-screen keyboard
    d.tap("help.search")
    d.type_keys("kb", "КВИТАНЦЫЯ")
    d.wait_text("help.hit0", lambda t: t == "Не выдан чек")
    d.both_languages("03-search")
    d.tap("help.hit0")
    assert d.text("help.title") == "Не выдан чек"
    d.tap("help.not_helped")
    assert "Спасибо" in d.text("help.article.note")
    d.tap("help.back")
    d.tap("kb.clear")
    d.type_keys("kb", "ЖЖЖЖ")
    d.wait_text("help.hit0", lambda t: t == "Ничего не найдено: позвоните нам")
    d.tap("help.search")  # leave the search with nothing found
    d.tap("help.back")
    d.on("idle")
    events = d.until(lambda: len(_help_events(term)) >= 5 and _help_events(term),
                     what="help events")
    kinds = [k for k, _ in events]
    assert kinds == ["help_opened", "help_article_viewed", "help_article_viewed",
                     "help_not_helped", "help_search_empty"], kinds
    codes = {data["help_code"] for _, data in events}
    assert len(codes) == 1 and codes.pop().startswith("T0001-")
    assert events[1][1]["article_id"] == "money_inside"
    assert events[3][1]["article_id"] == "no_receipt"
    assert _queued_for_desk(term) >= 5  # on their way to the desk with the other events


@pytest.mark.slow
def test_stuck_customer_gets_help_and_asks_for_a_call_back(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    d.until(lambda: d.ui.help_center is not None, what="the help center")
    d.tap("idle.start")
    d.on("provider")
    d.tap("provider.cat.mobile")
    d.tap("provider.slot0")  # МТС: ten digits from 9
    d.on("account")
    d.type_keys("account.key", "1234567890")
    for _ in range(3):  # the core refuses the number three times: stuck
        d.tap("account.next")
        d.pump(0.3)
    d.until(lambda: d.visible("overlay.title"), what="the help overlay")
    d.wait_text("overlay.call", lambda t: "T0001-" in t)
    assert "Номер не принимается" in d.text("overlay.body")
    d.both_languages("04-overlay")
    d.tap("overlay.callback")
    d.type_keys("overlay.key", "9161112233")
    d.both_languages("05-callback")
    d.tap("overlay.send")
    d.wait_text("overlay.body", lambda t: t.startswith("Заявка принята"))
    code = d.ui.snap["help_code"]
    assert code in d.text("overlay.body")
    d.tap("overlay.close")
    d.until(lambda: not d.visible("overlay.title"), what="the overlay closed")
    assert d.ui.sm.current == "account"  # the customer is where they were
    events = _help_events(term)
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["help_proactive_shown", "help_opened"], kinds
    assert events[0][1]["trigger"] == "invalid_account"
    callback = [data for k, data in events if k == "help_callback_requested"]
    assert len(callback) == 1
    cb = callback[0]
    assert cb["help_code"] == code and cb["phone"] == "9161112233"
    assert cb["trigger"] == "invalid_account"
    assert cb["context"]["screen"] == "account" and cb["context"]["provider_id"] == "mts"
    assert cb["context"]["account_masked"] == "••••••7890"


@pytest.mark.slow
def test_overlay_over_cash_keeps_the_amount_and_bills_keep_being_taken(terminal_factory,
                                                                       make_ui):
    """Bills the acceptor returns again and again bring help; the overlay shows the amount
    inserted, and a bill that fits is still credited under it, up to the payment."""
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    d.until(lambda: d.ui.help_center is not None, what="the help center")
    d.tap("idle.start")
    d.on("provider")
    d.tap("provider.cat.mobile")
    d.tap("provider.slot0")  # МТС, at most 15 000 ₽
    d.on("account")
    d.type_keys("account.key", "9161234567")
    d.tap("account.next")
    d.on("confirm")
    d.tap("confirm.yes")
    d.on("cash")

    def inserted() -> int:
        return int((d.ui.session or {}).get("inserted_minor") or 0)

    for rub, total in ((5000, 5000), (5000, 10000), (2000, 12000), (2000, 14000)):
        term.insert(rub)
        d.until(lambda total=total: inserted() == total * 100, 30, f"{total} ₽ inserted")
    for _ in range(3):  # 1 000 ₽ left under the maximum: each 5 000 ₽ note is returned
        term.insert(5000)
    d.until(lambda: d.visible("overlay.title"), 60, "the help overlay")
    assert "Купюра не принимается" in d.text("overlay.body")
    d.wait_text("overlay.inserted", lambda t: t.startswith("Внесено: 14 000"))
    d.both_languages("06-overlay-over-cash")
    term.insert(1000)  # fits: credited under the overlay, the maximum finishes the payment
    d.until(lambda: d.ui.sm.current == "receipt", 60, "the payment finished")
    d.until(lambda: not d.visible("overlay.title"), 10, "the overlay gone with the session")
    shown = [k for k, _ in _help_events(term)]
    assert "help_proactive_shown" in shown
    assert term.rows("SELECT inserted_minor FROM payments") == [(1_500_000,)]


@pytest.mark.slow
def test_help_screens_and_overlay_fit_every_panel(panel, terminal_factory, make_ui):  # noqa: F811
    """The help center's views and the overlay on every panel size, in both languages
    (the same checks as tests/ui/test_layout.py: nothing overlaps, clips or is too small)."""
    term = terminal_factory()
    d = _ui(make_ui, term, panel)
    d.on("idle", timeout=20)
    d.until(lambda: d.ui.help_center is not None, what="the help center")
    d.tap("idle.help")
    d.on("help")
    d.both_languages("h1-help-home")
    d.tap("help.cat1")
    d.both_languages("h2-help-topic")
    d.tap("help.item0")
    d.both_languages("h3-help-article")
    d.tap("help.back")
    d.tap("help.back")
    d.tap("help.search")
    d.type_keys("kb", "ДЕНГИ")
    d.wait_text("help.hit0", lambda t: t != "")
    d.both_languages("h4-help-search")
    d.tap("help.search")
    d.tap("help.back")
    d.on("idle")
    d.tap("idle.start")
    d.on("provider")
    d.tap("provider.cat.mobile")
    d.tap("provider.slot0")
    d.on("account")
    d.type_keys("account.key", "1234567890")
    for _ in range(3):
        d.tap("account.next")
        d.pump(0.3)
    d.until(lambda: d.visible("overlay.title"), what="the help overlay")
    d.wait_text("overlay.call", lambda t: "T0001-" in t)
    d.both_languages("h5-overlay")
    d.tap("overlay.callback")
    d.type_keys("overlay.key", "9161112233")
    d.both_languages("h6-overlay-callback")
