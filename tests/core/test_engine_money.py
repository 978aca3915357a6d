"""Money-safety invariants M1-M7, M9, M10 at the engine level (docs/invariants.md).

Each test names the invariant it guards. The ledger is a real SQLite file; the acceptor
is a double at the interface that behaves like a driver (ACK only after the listener).
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.acceptor import AcceptorStatus, EscrowDecision, StackedBill, StackOrigin
from kiosk.catalog import DEMO_CATALOG
from kiosk.ledger import LedgerError
from tests.core.harness import ledger_rows, make_terminal


def stacked_total(ledger) -> int:
    return ledger_rows(ledger, "SELECT COALESCE(SUM(amount_minor), 0) FROM stacked_bills")[0][0]


# -- M1: credit only at stacked -----------------------------------------------------------
def test_m1_escrow_alone_credits_nothing(term):
    term.to_cash()
    assert term.acceptor.escrow(500) is EscrowDecision.STACK
    snap = term.engine.snapshot()
    assert snap["session"]["inserted_minor"] == 0
    assert snap["session"]["bill_in_escrow"] is True
    assert stacked_total(term.ledger) == 0
    term.acceptor.report_stacked(500)
    assert term.engine.snapshot()["session"]["inserted_minor"] == 50_000


def test_m1_returned_bill_credits_nothing(term):
    term.to_cash()
    assert term.acceptor.escrow(100) is EscrowDecision.STACK
    from tests.core.doubles import bill

    term.engine.on_returned(bill(100))
    snap = term.engine.snapshot()
    assert snap["session"]["inserted_minor"] == 0
    assert snap["notice"]["code"] == "bill_returned"
    assert ledger_rows(term.ledger, "SELECT state FROM escrows") == [("returned",)]


# -- M2: persist before ACK; a repeated event credits nothing more -------------------------
def test_m2_repeated_stacked_event_credits_once(term):
    term.to_cash()
    term.acceptor.escrow(500)
    key = term.acceptor.report_stacked(500)
    term.acceptor.report_stacked(500, key=key)  # the ACK was lost: same event again
    term.acceptor.report_stacked(500, key=key)
    assert term.engine.snapshot()["session"]["inserted_minor"] == 50_000
    assert ledger_rows(term.ledger, "SELECT count(*) FROM stacked_bills") == [(1,)]
    assert ledger_rows(term.ledger, "SELECT count FROM cassette") == [(1,)]


def test_m2_commit_failure_means_no_ack_and_the_retry_credits_once(term, mocker):
    term.to_cash()
    term.acceptor.escrow(1000)
    real = term.ledger.record_stacked
    mocker.patch.object(
        term.ledger,
        "record_stacked",
        side_effect=LedgerError("ledger write failed: disk I/O error"),
    )
    with pytest.raises(LedgerError):
        term.acceptor.report_stacked(1000, key="k-1")
    assert term.acceptor.acked == []  # the driver did not acknowledge
    assert term.engine.snapshot()["screen"] == "out_of_service"
    mocker.patch.object(term.ledger, "record_stacked", side_effect=real)
    term.acceptor.report_stacked(1000, key="k-1")  # the device repeats it
    assert term.acceptor.acked == ["k-1"]
    assert ledger_rows(term.ledger, "SELECT amount_minor, session_id FROM stacked_bills") == [
        (100_000, 1)
    ]


def test_m2_committed_before_on_stacked_returns(term):
    """When on_stacked returns, a second connection already sees the bill on disk."""
    term.to_cash()
    term.acceptor.escrow(200)
    term.acceptor.report_stacked(200)
    with sqlite3.connect(term.ledger.path) as other:
        assert other.execute("SELECT amount_minor FROM stacked_bills").fetchall() == [(20_000,)]


# -- M3: escrow is a decision ---------------------------------------------------------------
def test_m3_bill_returned_when_no_session_collects(term):
    assert term.engine.screen.value == "idle"
    assert term.acceptor.escrow(100) is EscrowDecision.RETURN
    term.intent("select_provider", provider_id="mts")
    assert term.acceptor.escrow(100) is EscrowDecision.RETURN
    assert ledger_rows(term.ledger, "SELECT count(*) FROM escrows") == [(0,)]


def test_m3_bill_over_provider_maximum_is_returned(term):
    term.to_cash(provider="mts")  # maximum 15 000
    for _ in range(2):
        term.acceptor.insert(5000)
    term.acceptor.insert(2000)  # 12 000
    assert term.acceptor.escrow(5000) is EscrowDecision.RETURN
    assert term.engine.snapshot()["notice"]["code"] == "bill_over_max"
    assert term.acceptor.insert(2000) is EscrowDecision.STACK  # 14 000 still fits
    assert term.engine.snapshot()["session"]["inserted_minor"] == 1_400_000


def test_m3_second_bill_while_one_is_in_escrow_is_returned(term):
    term.to_cash()
    assert term.acceptor.escrow(100) is EscrowDecision.STACK
    assert term.acceptor.escrow(100) is EscrowDecision.RETURN


# -- M4: the acceptor is enabled only while a session collects cash ------------------------
def test_m4_acceptor_enabled_only_on_cash_screen(term):
    assert term.acceptor.enabled == frozenset()
    term.intent("select_provider", provider_id="mts")
    term.intent("submit_account", account="9161234567")
    assert term.acceptor.enabled == frozenset()
    term.intent("confirm_account")
    assert 50_000 in term.acceptor.enabled
    term.acceptor.insert(5000)
    term.acceptor.insert(5000)  # 10 000 in: a 5 000 bill still fits, nothing bigger exists
    assert max(term.acceptor.enabled) == 500_000
    term.acceptor.insert(2000)  # 12 000 in: only bills up to 3 000 fit
    assert max(term.acceptor.enabled) == 200_000
    term.intent("pay")
    assert term.acceptor.enabled == frozenset()
    term.drain()
    term.intent("done")
    assert term.acceptor.enabled == frozenset()


def test_m4_acceptor_disabled_on_fault_and_when_out_of_service(term):
    term.to_cash()
    assert term.acceptor.enabled
    term.acceptor.set_status(AcceptorStatus.JAMMED, "validator jammed")
    assert term.acceptor.enabled == frozenset()
    assert term.engine.screen.value == "out_of_service"
    events = [e["kind"] for e in term.ledger.recent_events()]
    assert "acceptor_fault" in events


# -- M5: the payment id is committed before the receipt prints ------------------------------
def test_m5_payment_committed_before_receipt_prints(term):
    seen = {}

    def check(document):
        with sqlite3.connect(term.ledger.path) as other:
            seen["rows"] = other.execute("SELECT id, status FROM payments").fetchall()

    term.printer.on_print = check
    pid = term.pay(500)
    assert seen["rows"] == [(pid, "queued")]
    assert pid in term.printer.texts()[-1]


def test_m5_payment_ids_are_monotonic_and_unique(term):
    ids = [term.pay(100) for _ in range(5)]
    assert ids == [f"T0001-{n:08d}" for n in range(1, 6)]
    assert len(set(ids)) == 5


# -- M6: crash reconciliation -----------------------------------------------------------------
def test_m6_session_with_cash_at_crash_becomes_payment(term):
    term.to_cash()
    term.acceptor.insert(500)
    term.acceptor.insert(100)
    # the process dies here; a new one opens the same ledger
    after = term.restart()
    payments = after.ledger.list_payments()
    assert len(payments) == 1
    p = payments[0]
    assert (p["kind"], p["inserted_minor"], p["account"]) == ("payment", 60_000, "9161234567")
    assert "restart" in p["note"]
    after.drain()
    assert p["id"] in after.printer.texts()[-1]
    assert after.engine.screen.value == "idle"
    after.engine.stop()


def test_m6_session_without_cash_at_crash_is_abandoned(term):
    term.to_cash()
    after = term.restart()
    assert after.ledger.list_payments() == []
    assert ledger_rows(after.ledger, "SELECT state FROM sessions") == [("abandoned",)]
    after.engine.stop()


def test_m6_bill_in_stacker_at_power_up_is_credited_to_its_session(term):
    """STACK sent, process died before the stacked report: the device reports it after
    power-up (CCNET 0x12 → 0x81) and it belongs to the session it was meant for."""
    term.to_cash()
    term.acceptor.insert(100)
    assert term.acceptor.escrow(500) is EscrowDecision.STACK
    after = term.restart()  # the restart reconciles on DISABLED: escrow expires
    after.acceptor.report_stacked(500, origin=StackOrigin.POWER_UP)
    rows = after.ledger.list_payments()
    kinds = sorted((r["kind"], r["inserted_minor"]) for r in rows)
    # the session was closed with 100 at restart; the 500 is never lost: unclaimed credit
    assert kinds == [("payment", 10_000), ("unclaimed", 50_000)]
    assert ledger_rows(
        after.ledger, "SELECT count(*) FROM stacked_bills WHERE payment_id IS NULL"
    ) == [(0,)]
    after.drain()
    slip = after.printer.texts()[-1]
    assert "8 800 555-35-35" in slip
    after.engine.stop()


def test_m6_recovered_bill_reported_before_reconciliation_joins_its_session(config, clock):
    term = make_terminal(config, clock)
    term.to_cash()
    term.acceptor.insert(100)
    term.acceptor.escrow(500)
    # New process: the device reports the stacked bill during start-up, before it settles.
    from kiosk.engine import PaymentEngine, PrinterWorker
    from kiosk.ledger import Ledger
    from tests.core.doubles import DoubleAcceptor, DoublePrinter

    ledger = Ledger(config.paths.ledger, "T0001", run_id="run2")
    ledger.open()
    acceptor = DoubleAcceptor(run_id="run2")
    worker = PrinterWorker()
    engine = PaymentEngine(
        config, ledger, acceptor, DoublePrinter(), clock=clock, printer_worker=worker
    )
    acceptor.listener = engine
    acceptor.report_stacked(500, origin=StackOrigin.POWER_UP)  # still INITIALIZING
    engine.start()
    worker.drain()
    payments = ledger.list_payments()
    assert [(p["kind"], p["inserted_minor"]) for p in payments] == [("payment", 60_000)]
    engine.stop()


def test_m6_unacknowledged_repeat_after_restart_credits_nothing(term):
    """Committed, then killed before the ACK: the device repeats the bill under the new
    driver run's key; it must not be counted twice."""
    term.to_cash()
    term.acceptor.insert(1000)
    after = term.restart()
    # the repeat, new key; the new run sent no STACK for it
    after.acceptor.report_stacked(1000, origin=StackOrigin.UNREQUESTED)
    assert ledger_rows(after.ledger, "SELECT count(*) FROM stacked_bills") == [(1,)]
    assert [p["inserted_minor"] for p in after.ledger.list_payments()] == [100_000]
    kinds = [e["kind"] for e in after.ledger.recent_events()]
    assert "duplicate_stacked_ignored" in kinds
    after.engine.stop()


def test_m6_power_up_bill_is_never_taken_for_an_earlier_runs_repeat(term):
    """Issue 12: a bill committed by the run that died, then the unit powers up with another
    note of the same value in its stacker (CCNET 0x12 → 0x81, ID-003 0x42 → VEND VALID).
    That report is a new stacking: an unclaimed credit, not `duplicate_stacked_ignored`."""
    term.to_cash()
    term.acceptor.insert(1000)  # committed by run1 (ACKed or not: the ledger cannot tell)
    after = term.restart()
    outcome_kinds = []
    real = after.ledger.record_stacked

    def spy(*args, **kwargs):
        outcome = real(*args, **kwargs)
        outcome_kinds.append(outcome.kind)
        return outcome

    after.engine.ledger.record_stacked = spy  # type: ignore[method-assign]
    after.acceptor.report_stacked(1000, origin=StackOrigin.POWER_UP)
    assert outcome_kinds == ["unclaimed"]
    assert ledger_rows(after.ledger, "SELECT amount_minor, recovered FROM stacked_bills") == [
        (100_000, 0), (100_000, 1)]
    assert sorted((p["kind"], p["inserted_minor"]) for p in after.ledger.list_payments()) == [
        ("payment", 100_000), ("unclaimed", 100_000)]
    kinds = [e["kind"] for e in after.ledger.recent_events()]
    assert "duplicate_stacked_ignored" not in kinds
    (event,) = [e for e in after.ledger.recent_events() if e["kind"] == "unclaimed_credit"]
    assert event["data"]["origin"] == "power_up"
    assert ledger_rows(after.ledger, "SELECT count FROM cassette") == [(2,)]
    after.engine.stop()


def test_m6_requested_report_after_restart_is_not_a_repeat(term):
    """Only an UNREQUESTED report may be an earlier run's un-ACKed repeat: a bill this run
    sent STACK for (its escrow already forgotten by the engine) is counted."""
    term.to_cash()
    term.acceptor.insert(1000)
    after = term.restart()
    after.acceptor.report_stacked(1000, origin=StackOrigin.REQUESTED)
    assert ledger_rows(after.ledger, "SELECT count(*) FROM stacked_bills") == [(2,)]
    after.engine.stop()


def test_m6_bill_the_device_cannot_name_is_an_unclaimed_credit_of_unknown_value(term):
    """Issue 12: a stacking reported without a denomination (ID-003 VEND VALID without an
    escrow code after 0x42, no STACK outstanding) is recorded, never dropped: an unclaimed
    record of unknown value (0) counted in the cassette, and an event for the technician."""
    term.engine.on_stacked(StackedBill(None, "double:run1:x", StackOrigin.POWER_UP, "RUB"))
    (record,) = term.ledger.list_payments()
    assert (record["kind"], record["inserted_minor"], record["note"]) == (
        "unclaimed", 0, "stacked bill of unknown denomination: count the cassette")
    assert ledger_rows(term.ledger, "SELECT amount_minor, bill_type, recovered, currency "
                                    "FROM stacked_bills") == [(0, -1, 1, "RUB")]
    assert ledger_rows(term.ledger, "SELECT amount_minor, count FROM cassette") == [(0, 1)]
    events = {e["kind"]: e["data"] for e in term.ledger.recent_events()}
    assert events["unknown_bill_stacked"] == {
        "event_key": "double:run1:x", "currency": "RUB", "origin": "power_up"}
    assert events["unclaimed_credit"]["record_id"] == record["id"]
    # the same report again (a lost ACK) records nothing more
    term.engine.on_stacked(StackedBill(None, "double:run1:x", StackOrigin.POWER_UP, "RUB"))
    assert ledger_rows(term.ledger, "SELECT count(*) FROM stacked_bills") == [(1,)]


def test_m6_stray_bill_without_escrow_becomes_unclaimed(term):
    term.acceptor.report_stacked(200)  # no session, no escrow on record: device anomaly
    rows = term.ledger.list_payments()
    assert [(r["kind"], r["inserted_minor"], r["status"]) for r in rows] == [
        ("unclaimed", 20_000, "unclaimed")
    ]
    term.drain()
    assert rows[0]["id"] in term.printer.texts()[-1]


# -- M7: cassette counters equal the bills stacked since the last encashment ---------------
def _counters_match(ledger) -> bool:
    counted = dict(ledger_rows(ledger, "SELECT amount_minor, count FROM cassette WHERE count>0"))
    derived = dict(
        ledger_rows(
            ledger,
            "SELECT amount_minor, count(*) FROM stacked_bills "
            "WHERE encashment_id IS NULL GROUP BY amount_minor",
        )
    )
    return counted == derived


def test_m7_counters_follow_stacked_bills_and_reset_on_encashment(term):
    from kiosk import service

    term.pay(500, 100, 100)
    term.pay(1000)
    assert _counters_match(term.ledger)
    report = service.encash(term.engine, "tech-1")
    assert report["bill_count"] == 4 and report["total_minor"] == 170_000
    assert report["printed"] is True
    assert term.ledger.cassette_counts() == []
    assert _counters_match(term.ledger)
    term.pay(50)
    assert _counters_match(term.ledger)
    assert [(c["amount_minor"], c["count"]) for c in term.ledger.cassette_counts()] == [(5_000, 1)]
    assert "tech-1" in term.printer.texts()[-2]


def test_m7_encashment_refused_during_a_customer_session(term):
    from kiosk import service
    from kiosk.engine import IntentError

    term.to_cash()
    with pytest.raises(IntentError) as exc:
        service.encash(term.engine, "tech")
    assert exc.value.code == "busy"


# -- M9: no change; the amount above the commission goes to the account --------------------
@settings(max_examples=300, deadline=None)
@given(
    provider=st.sampled_from([p.id for p in DEMO_CATALOG.providers]),
    inserted=st.integers(min_value=0, max_value=2_000_000),
)
def test_m9_fee_plus_credit_equals_inserted(provider, inserted):
    p = DEMO_CATALOG.get(provider)
    fee = p.commission(inserted)
    assert 0 <= fee <= inserted
    assert p.credited(inserted) + fee == inserted


def test_m9_ledger_caps_commission_at_inserted(term):
    """The ledger's own cap, whatever the commission function says (a bad catalog): the
    fee never exceeds the cash. (Cash the fee would swallow whole never reaches it from
    the engine: see test_engine_flow's walk-away test, an unclaimed credit instead.)"""
    term.to_cash()
    term.acceptor.insert(100)
    ((session_id,),) = ledger_rows(term.ledger,
                                   "SELECT id FROM sessions WHERE state = 'collecting'")
    payment_id = term.ledger.finish_session(session_id, lambda amount: amount * 2)
    p = term.ledger.get_payment(payment_id)
    assert (p["inserted_minor"], p["commission_minor"], p["credited_minor"]) == (10_000, 10_000, 0)


# -- M10: a ledger that cannot write stops the taking of money -----------------------------
def _break_ledger(term, pragma: str) -> None:
    """Run a statement on the ledger's own SQLite connection, outside any transaction."""
    raw = term.ledger.engine.raw_connection()
    try:
        raw.driver_connection.execute(pragma)
    finally:
        raw.close()


def test_m10_disk_full_returns_bill_and_goes_out_of_service(term):
    term.to_cash()
    term.acceptor.insert(100)
    # Let the database grow no further: SQLite's own "database or disk is full".
    _break_ledger(term, "VACUUM")
    pages = ledger_rows(term.ledger, "PRAGMA page_count")[0][0]
    _break_ledger(term, f"PRAGMA max_page_count={pages}")
    for _ in range(1000):  # until the pages' free space runs out
        if term.acceptor.escrow(10) is EscrowDecision.RETURN:
            break
        try:
            term.acceptor.report_stacked(10)
        except LedgerError:
            break
    snap = term.engine.snapshot()
    assert snap["screen"] == "out_of_service"
    assert term.acceptor.enabled == frozenset()
    assert "ledger" in snap["out_of_service"]["reasons"]
    assert "full" in term.engine.oos_reasons["ledger"]  # SQLITE_FULL, not another error
    assert "8 800 555-35-35" in snap["out_of_service"]["en"]
    assert term.acceptor.escrow(100) is EscrowDecision.RETURN
    # every bill the engine accepted is on disk: what it shows equals what was stacked
    assert stacked_total(term.ledger) == term.engine.session.inserted_minor
    assert stacked_total(term.ledger) > 10_000


def test_m10_read_only_ledger_refuses_cash(term):
    _break_ledger(term, "PRAGMA query_only=ON")  # every write now fails like a read-only fs
    term.intent("select_provider", provider_id="mts")
    term.intent("submit_account", account="9161234567")
    from kiosk.engine import IntentError

    with pytest.raises(IntentError) as exc:
        term.intent("confirm_account")
    assert exc.value.code == "out_of_service"
    assert "readonly" in term.engine.oos_reasons["ledger"]
    assert term.engine.screen.value == "out_of_service"
    assert term.acceptor.enabled == frozenset()
    assert term.acceptor.escrow(500) is EscrowDecision.RETURN


def test_m4_acceptor_enabled_once_a_late_bill_table_arrives(term, monkeypatch):
    """A driver may report 'disabled' before it has read the bill table; the cash screen
    must still enable the acceptor once the table is known."""
    from drivers.acceptor import DeviceInfo
    from tests.core.doubles import RUB_TABLE

    monkeypatch.setattr(
        type(term.acceptor),
        "info",
        property(lambda self: DeviceInfo("double", bill_table=self.table)),
    )
    term.acceptor.table = ()
    term.to_cash()
    assert term.acceptor.enabled == frozenset()
    term.acceptor.table = RUB_TABLE
    term.tick(0.1)
    assert 50_000 in term.acceptor.enabled


def test_technician_acceptor_test_returns_every_bill_and_credits_nothing(term):
    from kiosk import service

    service.acceptor_test(term.engine, True)
    assert term.engine.screen.value == "out_of_service"  # no customer can pay meanwhile
    assert 500_000 in term.acceptor.enabled
    assert term.acceptor.insert(500) is EscrowDecision.RETURN
    assert term.acceptor.insert(100) is EscrowDecision.RETURN
    seen = service.acceptor_test_results(term.engine)["bills_seen"]
    assert [b["amount_minor"] for b in seen] == [50_000, 10_000]
    service.acceptor_test(term.engine, False)
    assert term.acceptor.enabled == frozenset()
    assert term.engine.screen.value == "idle"
    assert stacked_total(term.ledger) == 0
    assert ledger_rows(term.ledger, "SELECT count(*) FROM escrows") == [(0,)]


def test_m10_disk_guard_warns_then_stops_before_the_disk_is_full(term, mocker):
    """The free space is an edge: shutil.disk_usage is patched, everything else is real."""
    import shutil
    from collections import namedtuple

    from kiosk import engine as engine_module

    usage = namedtuple("usage", "total used free")
    mib = 1024 * 1024
    patched = mocker.patch.object(shutil, "disk_usage", return_value=usage(10**10, 0, 100 * mib))
    term.tick(engine_module.DISK_CHECK_S)
    assert term.engine.disk.value == "low"
    assert term.engine.screen.value == "idle"  # still taking payments, the desk is warned
    patched.return_value = usage(10**10, 0, 5 * mib)
    term.tick(engine_module.DISK_CHECK_S)
    snap = term.engine.snapshot()
    assert snap["screen"] == "out_of_service" and "disk" in snap["out_of_service"]["reasons"]
    assert term.acceptor.escrow(100) is EscrowDecision.RETURN
    patched.return_value = usage(10**10, 0, 500 * mib)
    term.tick(engine_module.DISK_CHECK_S)
    assert term.engine.screen.value == "idle"
    kinds = [e["kind"] for e in term.ledger.recent_events()]
    assert {"disk_low", "disk_critical", "disk_ok"} <= set(kinds)


def test_m10_terminal_returns_to_service_when_the_ledger_can_write_again(term):
    from kiosk import engine as engine_module

    term.to_cash()
    term.acceptor.insert(500)
    _break_ledger(term, "PRAGMA query_only=ON")
    assert term.acceptor.escrow(100) is EscrowDecision.RETURN  # the marker cannot be written
    assert term.engine.screen.value == "out_of_service"
    term.tick(engine_module.LEDGER_PROBE_S)
    assert term.engine.screen.value == "out_of_service"  # still read-only
    _break_ledger(term, "PRAGMA query_only=OFF")
    term.tick(engine_module.LEDGER_PROBE_S)
    term.drain()
    assert term.engine.screen.value == "receipt"  # the 500 inside became a payment
    payment = term.ledger.list_payments()[0]
    assert (payment["inserted_minor"], payment["note"]) == (
        50_000,
        "finished after a ledger failure",
    )
    assert "Completed after a storage failure" in " ".join(term.printer.texts()[-1].split())
