"""The final screen's offers by touch: a real core talking MQTT to a real mosquitto and the
minimal desk, which pushes signed offer rules; after a payment made by touch the receipt
screen shows the three offers the rules choose, the printed receipt carries the top one,
a tap on an offer reaches the desk as "interested" with the account only as a hash."""

from __future__ import annotations

import base64
import json

import pytest

from kiosk.config import load_config
from kiosk.offers import account_hash
from tests.sync.broker import Broker
from tests.sync.conftest import DeskKey, make_desk, wait_for
from tests.sync.terminal import terminal_public_key

ACCOUNT = "9161234567"
RAW_KEY = b"ui-offers-network-key-01"


def _offer(oid: str, name: str, priority: int, **kw):  # type: ignore[no-untyped-def]
    return {"id": oid, "priority": priority, "title_ru": f"Тариф «{name}»",
            "title_en": f"Plan {oid}", "text_ru": "Безлимит за 300 ₽ в месяц",
            "text_en": "Unlimited for 300 ₽ a month", **kw}


def _with_offers(terminal_factory, tmp_path, broker, desk_key, **kw):  # type: ignore[no-untyped-def]
    """A core whose desk pushed the offer rules (applied before the UI starts)."""
    term = terminal_factory(extra=f"""
[mqtt]
enabled = true
host = "127.0.0.1"
port = {broker.port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
{desk_key.toml()}""", **kw)
    config = load_config(term.core.config)
    tid = config.terminal.id
    desk = make_desk(broker, desk_key, {tid: terminal_public_key(config)},
                     tmp_path / "desk.sqlite", client_id=f"desk-ui-{tmp_path.name}").start()
    offers = {"account_key": base64.b64encode(RAW_KEY).decode(), "holdout_percent": 0,
              "items": [_offer("giga", "Гига", 9), _offer("home", "Дом", 8),
                        _offer("tv", "ТВ", 7), _offer("fourth", "Четвёртый", 1),
                        _offer("bee", "Билайн", 99, providers=["beeline"])]}
    desk.publish_config(tid, {"version": 1, "terminal_id": "*", "offers": offers})
    wait_for(lambda: (desk.health.get(tid) or {}).get("config_version") == 1, 20,
             "config applied")
    return term, desk, tid


def _to_confirm(d) -> None:  # type: ignore[no-untyped-def]
    d.on("idle", timeout=20)
    d.tap("idle.start")
    d.on("provider")
    d.tap("provider.cat.mobile")
    d.tap("provider.slot0")  # МТС
    d.on("account")
    d.type_keys("account.key", ACCOUNT)
    d.until(lambda: (d.ui.session or {}).get("account") == ACCOUNT, what="account")
    d.tap("account.next")
    d.on("confirm")


@pytest.mark.slow  # a core, a broker, a desk and the UI: not in make test-fast
def test_offers_on_the_final_screen_by_touch(terminal_factory, make_ui, tmp_path):
    broker = Broker(tmp_path / "mosquitto").start()
    desk = None
    try:
        term, desk, tid = _with_offers(terminal_factory, tmp_path, broker, DeskKey())
        d = make_ui(term)
        _to_confirm(d)
        assert not d.visible("receipt.offer0")
        d.tap("confirm.yes")
        d.on("cash")
        term.insert(500)
        d.wait_text("cash.inserted", lambda t: t == "500,00 ₽")
        assert not d.visible("receipt.offers_title")  # nothing of offers before the commit
        d.tap("cash.pay")

        d.on("receipt")
        d.wait_text("receipt.offer0", lambda t: "Гига" in t)
        assert "Дом" in d.text("receipt.offer1") and "ТВ" in d.text("receipt.offer2")
        assert "Безлимит" in d.text("receipt.offer0")
        d.wait_text("receipt.state", lambda t: t.startswith("Заберите чек"), timeout=20)
        d.both_languages("offers-receipt")
        assert term.printer.wait_for_receipts(1, timeout=10)
        paper = term.printer.receipts[-1]
        assert "Гига" in paper and "Plan giga" in paper and "Дом" not in paper

        d.tap("receipt.offer1")
        d.wait_text("receipt.offer1", lambda t: "Спасибо" in t)
        d.both_languages("offers-interested")
        wait_for(lambda: any(e["kind"] == "offer_interested" for e in desk.store.events(tid)),
                 20, "interested at the desk")
        tap = next(e for e in desk.store.events(tid) if e["kind"] == "offer_interested")
        assert tap["data"]["offer_id"] == "home" and tap["data"]["rank"] == 2
        assert tap["data"]["context"]["account_hash"] == account_hash(RAW_KEY, "mts", ACCOUNT)
        stored = json.dumps([e for e in desk.store.events(tid)
                             if e["kind"].startswith("offer_")], ensure_ascii=False)
        assert ACCOUNT not in stored
        d.tap("receipt.done")
        d.on("idle")
    finally:
        if desk is not None:
            desk.stop()
        broker.stop()


@pytest.mark.slow  # a core, a broker, a desk and the UI: not in make test-fast
def test_offers_beside_a_receipt_that_could_not_print(terminal_factory, make_ui, tmp_path):
    """The longest receipt state (write the number down, call …) and the offers fit."""
    broker = Broker(tmp_path / "mosquitto").start()
    desk = None
    try:
        term, desk, _tid = _with_offers(terminal_factory, tmp_path, broker, DeskKey(),
                                        printer_fault="paper_out")
        d = make_ui(term)
        _to_confirm(d)
        d.tap("confirm.no_receipt")
        d.until(lambda: d.visible("confirm.yes"), 10, "confirm after accepting")
        d.tap("confirm.yes")
        d.on("cash")
        term.insert(100)
        d.wait_text("cash.inserted", lambda t: t.startswith("100,00"))
        d.tap("cash.pay")
        d.on("receipt")
        d.wait_text("receipt.state", lambda t: "T0001-00000001" in t, timeout=30)
        d.wait_text("receipt.offer0", lambda t: "Гига" in t)
        d.both_languages("offers-receipt-not-printed")  # nothing clipped, overlapping
    finally:
        if desk is not None:
            desk.stop()
        broker.stop()
