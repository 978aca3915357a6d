"""Money at the edges (issue 12), terminal side: lost escrow outcomes are reported and
explained at encashment; payment and event ids never repeat whatever happens to the
ledger file; a ledger deleted or replaced under the running core is noticed before the
next credit. Real SQLite ledger files; the engine with device doubles where the defect
lives in the engine, the real daemon and CLI (tests/core/test_money_edges_daemon.py)
where it lives in start-up.
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from drivers.acceptor import EscrowDecision, StackOrigin
from drivers.layout import render_plain
from kiosk import service
from kiosk.ledger import Ledger, LedgerError, LedgerIdentityError
from kiosk.ledger.identity import PAYMENT_BLOCK, marker_path, read_marker
from tests.core.harness import ledger_rows


def outbox_events(ledger: Ledger, kind: str) -> list[dict]:
    rows = ledger_rows(ledger, "SELECT payload FROM outbox WHERE kind = 'event'")
    return [p for (raw,) in rows if (p := json.loads(raw))["kind"] == kind]


# -- DEFECT 5: a lost escrow outcome leaves a trace ----------------------------------------
def test_lost_escrow_outcome_is_reported_and_explained_at_encashment(term):
    term.to_cash()
    assert term.acceptor.escrow(1000) is EscrowDecision.STACK  # STACK sent ...
    # ... and the power goes: the unit never says what became of the note.
    term2 = term.restart()
    try:
        term2.tick(11)  # start-up reconciliation
        term2.drain()
        assert ledger_rows(term2.ledger, "SELECT state FROM escrows") == [("expired",)]
        events = outbox_events(term2.ledger, "escrow_outcome_unknown")  # reaches the desk
        assert len(events) == 1
        assert events[0]["data"]["total_minor"] == 100_000
        assert [e["amount_minor"] for e in events[0]["data"]["escrows"]] == [100_000]
        report = service.encash(term2.engine, "tech")  # as tech.encash calls it
        assert [u["amount_minor"] for u in report["unknown_outcomes"]] == [100_000]
        slip = "\n".join(render_plain(term2.printer.printed[-1], 42))
        assert "OUTCOME UNKNOWN" in slip and "1 000.00" in slip
        # explained once: the next report does not repeat it
        assert service.encash(term2.engine, "tech")["unknown_outcomes"] == []
    finally:
        term2.engine.stop()


def test_expired_escrow_claimed_later_is_not_listed_as_unknown(term):
    term.to_cash()
    term.acceptor.escrow(500)
    term2 = term.restart()
    try:
        term2.tick(11)
        term2.acceptor.report_stacked(500, origin=StackOrigin.UNREQUESTED)  # the unit remembers
        term2.drain()  # its slip prints on the printer thread, on the same connection
        assert ledger_rows(term2.ledger, "SELECT state FROM escrows") == [("stacked",)]
        assert service.encash(term2.engine, "tech")["unknown_outcomes"] == []
    finally:
        term2.engine.stop()


# -- DEFECT 6: ledger identity -------------------------------------------------------------
def _pay(ledger: Ledger, rubles: int = 2000) -> str:
    session = ledger.open_session("mts", "9161234567", "RUB")
    escrow = ledger.record_escrow(session, rubles * 100, "RUB", 5)
    ledger.record_stacked(f"k{os.urandom(4).hex()}", rubles * 100, "RUB", 5, False, escrow)
    payment_id = ledger.finish_session(session, lambda amount: 0)
    assert payment_id is not None
    return payment_id


def test_missing_ledger_of_a_terminal_that_ran_is_not_recreated(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, "T1")
    ledger.open()
    first = _pay(ledger)
    assert first == "T1-00000001"
    old_event = ledger.add_event("technician_login", "info", {})
    ledger.close()
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)

    again = Ledger(path, "T1")
    with pytest.raises(LedgerIdentityError, match="missing"):
        again.open()
    assert not path.exists()  # nothing created silently
    with pytest.raises(LedgerError, match="missing"):
        again.open_session("mts", "9161234567", "RUB")

    result = again.initialise_new("tech", "disk replaced")
    paid = _pay(again)
    assert int(paid.split("-")[1]) > PAYMENT_BLOCK  # above everything the old one reserved
    assert paid != first
    payload = json.loads(
        ledger_rows(again, f"SELECT payload FROM outbox WHERE ref = '{paid}'")[0][0]
    )
    assert payload["ledger_id"] == result["ledger_id"] == again.ledger_id
    init = outbox_events(again, "ledger_initialised")
    assert init and init[0]["data"]["by"] == "tech"
    assert init[0]["data"]["previous_ledger_id"] == result["previous_ledger_id"] is not None
    # event ids continue above the old ledger's too (the desk knows events by id)
    assert init[0]["event_id"] > old_event
    again.close()
    reopened = Ledger(path, "T1")
    reopened.open()  # the new ledger is this terminal's own from now on
    assert reopened.ledger_id == result["ledger_id"]
    reopened.close()


def test_replaced_ledger_is_refused_and_kept_aside_on_init(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, "T1")
    ledger.open()
    _pay(ledger)
    _pay(ledger)
    ledger.close()
    other_dir = tmp_path / "other"
    other = Ledger(other_dir / "ledger.sqlite", "T1")  # an old copy / another terminal's
    other.open()
    other.close()
    for name in ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    os.replace(other_dir / "ledger.sqlite", path)

    again = Ledger(path, "T1")
    with pytest.raises(LedgerIdentityError, match="replaced"):
        again.open()
    again.initialise_new("tech")
    assert list(tmp_path.glob("ledger.sqlite.replaced-*"))  # kept, never deleted
    assert _pay(again) != "T1-00000001"
    again.close()


def test_marker_reserves_numbers_before_they_are_used(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, "T1")
    ledger.open()
    for _ in range(3):
        _pay(ledger)
        marker = read_marker(marker_path(path))
        assert marker is not None and marker.ledger_id == ledger.ledger_id
        number = ledger_rows(ledger, "SELECT MAX(number) FROM payments")[0][0]
        assert marker.payment_reserved >= number
    ledger.close()


def test_ledger_from_before_identity_is_adopted(tmp_path):
    """An upgrade: a ledger that ran without identity and no marker keeps working."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, "T1")
    ledger.open()
    _pay(ledger)
    ledger.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM ledger_identity")
    db.commit()
    db.close()
    marker_path(path).unlink()
    again = Ledger(path, "T1")
    again.open()
    assert _pay(again) == "T1-00000002"
    assert read_marker(marker_path(path)).ledger_id == again.ledger_id
    again.close()


# -- DEFECT 7: deleted or replaced under the running core ---------------------------------
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_ledger_file_gone_under_the_engine_refuses_the_next_bill(term, tmp_path, how):
    path = term.ledger.path
    term.pay(500)
    term.to_cash()
    if how == "deleted":
        path.unlink()
    else:
        copy = path.with_name("copy.sqlite")
        copy.write_bytes(path.read_bytes())
        os.replace(copy, path)
    # before any STACK decision: the bill goes back, the terminal goes out of service
    assert term.acceptor.escrow(1000) is EscrowDecision.RETURN
    assert "ledger" in term.engine.oos_reasons
    assert how in term.engine.oos_reasons["ledger"]
    assert term.engine.snapshot()["screen"] == "out_of_service"


def test_ledger_file_deleted_while_idle_is_noticed_by_the_tick(term):
    term.tick(2)
    assert term.engine.screen.value == "idle"
    term.ledger.path.unlink()
    term.tick(2)
    assert "deleted" in term.engine.oos_reasons.get("ledger", "")
    term.tick(30)  # the 10-s probe never brings back a ledger that is not there
    assert term.engine.screen.value == "out_of_service"


# -- DEFECT 9: ASCII account digits --------------------------------------------------------
def test_full_width_digits_are_not_an_account(term):
    term.intent("select_provider", provider_id="mts")
    from kiosk.engine import IntentError

    with pytest.raises(IntentError) as err:
        term.intent("set_account", account="９１６１２３４５６７")
    assert err.value.code == "bad_account"
    provider = term.engine.config.catalog.get("mts")
    assert not provider.validate_account("９１６１２３４５６７")
    assert provider.validate_account("9161234567")
