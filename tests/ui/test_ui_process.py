"""The UI as its own process (`python -m ui`): killing it mid-payment changes nothing.

The core keeps the session and the money; a restarted UI asks for the snapshot and shows
the cash screen with the same amount. The UI process reports what it shows (`--report`:
one SHOWN line per frame that changed, with the texts of its visible labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kiosk.api_client import ApiClient
from tests.chaos.screen import UiProcess

REPO = Path(__file__).resolve().parents[2]


def _cash_shown(amount: str) -> Any:
    return lambda s: (s["screen"] == "cash"
                      and s["labels"].get("cash.inserted", "").replace("\u00a0", " ") == amount)


def test_killing_the_ui_mid_payment_changes_nothing(terminal_factory, xvfb, tmp_path):
    term = terminal_factory()
    client = ApiClient(term.core.socket)
    client.connect()
    client.wait_for(lambda s: s["screen"] == "idle", 20)
    # first start as `kiosk ui -c kiosk.toml`: the socket comes from the core's config
    ui = UiProcess(["-m", "kiosk", "ui", "-c", str(term.core.config)], xvfb, tmp_path / "k")
    try:
        ui.wait_for(lambda s: s["screen"] == "idle")
        client.intent("select_provider", provider_id="mts")
        client.intent("submit_account", account="9161234567")
        client.intent("confirm_account")
        ui.wait_for(_cash_shown("0,00 ₽"))
        term.insert(500)
        ui.wait_for(_cash_shown("500,00 ₽"))
        ui.kill()  # kill -9 in the middle of the insertion
        term.insert(500)  # the customer goes on while no screen is up
        client.wait_for(lambda s: (s["session"] or {}).get("inserted_minor") == 100000, 10)
        ui = UiProcess(["-m", "ui", "--socket", str(term.core.socket)], xvfb, tmp_path / "k")
        shown = ui.wait_for(lambda s: s["screen"] == "cash")
        assert shown["labels"]["cash.inserted"].replace("\u00a0", " ") == "1 000,00 ₽"
        assert shown["labels"]["cash.to"] == "МТС: +7 (916) 123-45-67"
        client.intent("pay")
        ui.wait_for(lambda s: s["screen"] == "receipt"
                    and s["labels"].get("receipt.payment_id") == "T0001-00000001")
    finally:
        ui.kill()
        client.close()
    # the money: one payment with both bills, each bill counted once
    assert term.rows("SELECT id, inserted_minor, status FROM payments") == [
        ("T0001-00000001", 100000, "queued")]
    assert term.rows("SELECT count(*), sum(amount_minor) FROM stacked_bills") == [(2, 100000)]
    assert term.rows("SELECT count FROM cassette WHERE amount_minor = 50000") == [(2,)]
