"""The customer session: screens, timeouts with a "continue?" prompt, cancel rules."""

from __future__ import annotations

import pytest

from drivers.printer import PrinterStatus
from kiosk.engine import IntentError
from tests.core.harness import MTS_ACCOUNT, ledger_rows, make_terminal


def test_starts_idle_after_reconciliation(term):
    assert term.engine.screen.value == "idle"
    snap = term.engine.snapshot()
    assert snap["terminal"]["support_phone"] == "8 800 555-35-35"
    assert snap["out_of_service"] is None


def test_full_payment_flow_prints_receipt_with_payment_id(term):
    term.to_cash()
    snap = term.engine.snapshot()
    assert snap["session"]["account_display"] == "+7 (916) 123-45-67"
    term.acceptor.insert(500)
    term.acceptor.insert(100)
    snap = term.engine.snapshot()
    assert snap["session"]["inserted_minor"] == 60_000
    # mts: 3 % above 500 roubles, min 10: 18.00 roubles
    assert snap["session"]["commission_minor"] == 1_800
    assert snap["session"]["credited_minor"] == 58_200
    term.intent("pay")
    term.drain()
    snap = term.engine.snapshot()
    assert snap["screen"] == "receipt"
    payment = snap["last_payment"]
    assert payment["receipt"] == "printed"
    assert payment["payment_id"] == "T0001-00000001"
    term.tick(1)
    term.drain()
    assert len(term.printer.printed) == 1  # one receipt, however often the clock ticks
    text = term.printer.texts()[-1]
    assert "T0001-00000001" in text and "8 800 555-35-35" in text
    row = term.ledger.get_payment(payment["payment_id"])
    assert (row["inserted_minor"], row["commission_minor"], row["credited_minor"]) == (
        60_000,
        1_800,
        58_200,
    )
    assert row["account"] == MTS_ACCOUNT and row["status"] == "queued"
    assert row["receipt_printed_ms"] is not None
    term.intent("done")
    assert term.engine.screen.value == "idle"


def test_invalid_account_is_refused_and_screen_stays(term):
    term.intent("select_provider", provider_id="mts")
    with pytest.raises(IntentError) as exc:
        term.intent("submit_account", account="8161234567")  # mobile numbers start with 9
    assert exc.value.code == "invalid_account"
    assert term.engine.screen.value == "account"
    with pytest.raises(IntentError):
        term.intent("set_account", account="12ab")


def test_unknown_provider_and_wrong_screen(term):
    with pytest.raises(IntentError) as exc:
        term.intent("select_provider", provider_id="nope")
    assert exc.value.code == "unknown_provider"
    with pytest.raises(IntentError) as exc:
        term.intent("pay")
    assert exc.value.code == "wrong_screen"
    with pytest.raises(IntentError) as exc:
        term.intent("fly")
    assert exc.value.code == "unknown_intent"


def test_timeout_shows_prompt_then_returns_to_idle_without_cash(term):
    term.intent("select_provider", provider_id="mts")
    term.tick(term.engine.config.timeouts.account - 1)
    assert term.engine.snapshot()["prompt"] is None
    term.tick(2)
    prompt = term.engine.snapshot()["prompt"]
    assert prompt is not None and prompt["kind"] == "continue"
    term.intent("continue")
    assert term.engine.snapshot()["prompt"] is None
    assert term.engine.screen.value == "account"
    term.tick(term.engine.config.timeouts.account + 1)
    term.tick(term.engine.config.timeouts.prompt + 1)
    assert term.engine.screen.value == "idle"


def test_cash_session_that_times_out_is_confirmed_never_dropped(term):
    term.to_cash()
    term.acceptor.insert(50)  # below the 10-rouble minimum? no: 50 >= 10; one bill
    term.tick(term.engine.config.timeouts.cash_after_bill + 1)
    assert term.engine.snapshot()["prompt"] is not None
    term.tick(term.engine.config.timeouts.prompt + 1)
    term.drain()
    snap = term.engine.snapshot()
    assert snap["screen"] == "receipt"
    row = term.ledger.get_payment(snap["last_payment"]["payment_id"])
    assert row["inserted_minor"] == 5_000
    assert "timed out" in row["note"]


@pytest.mark.parametrize(("provider", "account", "rubles"), [
    ("mts", MTS_ACCOUNT, 10),  # under the 50-rouble minimum, and the 10-rouble fee takes all
    ("domru", "1234567890", 50),  # no fee, but under the 100-rouble minimum
])
def test_walk_away_below_minimum_leaves_an_unclaimed_credit_not_a_payment(
        term, provider, account, rubles):
    """Cash the provider would not take (or the fee would swallow) must never become a
    payment by itself: when the customer walks away it is an unclaimed credit for the
    desk, with a slip and the notice on the start screen (M5, M6, M9)."""
    term.to_cash(provider=provider, account=account)
    term.acceptor.insert(rubles)
    term.tick(term.engine.config.timeouts.cash_after_bill + 1)
    prompt = term.engine.snapshot()["prompt"]
    # the prompt says what will happen: not "the payment will be completed"
    assert prompt["code"] == "continue_prompt_unclaimed"
    assert "квитке" in prompt["ru"] and "slip" in prompt["en"]
    term.tick(term.engine.config.timeouts.prompt + 1)
    term.drain()
    snap = term.engine.snapshot()
    assert snap["screen"] == "idle"
    (record,) = term.ledger.list_payments()
    assert (record["kind"], record["status"], record["inserted_minor"],
            record["commission_minor"], record["credited_minor"]) == (
        "unclaimed", "unclaimed", rubles * 100, 0, 0)
    assert (record["provider_id"], record["account"]) == (provider, account)
    assert snap["notice"]["code"] == "unclaimed_credit"
    assert snap["notice"]["args"]["record_id"] == record["id"]
    assert snap["notice"]["args"]["amount"] == {"minor": rubles * 100, "currency": "RUB"}
    # every bill of the session belongs to the record; the session is closed with it
    assert ledger_rows(term.ledger, "SELECT payment_id FROM stacked_bills") == [(record["id"],)]
    assert ledger_rows(term.ledger, "SELECT state, payment_id, inserted_minor FROM sessions") \
        == [("finished", record["id"], rubles * 100)]
    # the desk hears of it (outbox) and so does the technician (event); a slip is printed
    assert ledger_rows(term.ledger, "SELECT ref FROM outbox WHERE kind = 'payment'") == [
        (record["id"],)]
    events = {e["kind"]: e["data"] for e in term.ledger.recent_events()}
    assert events["unclaimed_credit"]["record_id"] == record["id"]
    assert record["id"] in term.printer.texts()[-1]
    # a restart finds nothing open to turn into a payment
    report = term.ledger.reconcile(lambda _p: lambda _a: 0)
    assert report.recovered_payments == () and report.unclaimed_records == ()
    assert len(term.ledger.list_payments()) == 1


@pytest.mark.parametrize(("provider", "account", "rubles", "kind"), [
    ("mts", MTS_ACCOUNT, 10, "unclaimed"),  # the 10-rouble fee would take all of it
    ("domru", "1234567890", 50, "unclaimed"),  # under the 100-rouble minimum
    ("domru", "1234567890", 100, "payment"),  # payable: the restart completes it (M6)
])
def test_crash_with_too_little_cash_inside_ends_as_an_unclaimed_credit(
        term, provider, account, rubles, kind):
    """The core dies while such a session collects: the restart's reconciliation must not
    make a zero-credit (or below-minimum) payment of it either (M6, M9)."""
    term.to_cash(provider=provider, account=account)
    term.acceptor.insert(rubles)
    after = term.restart()
    (record,) = after.ledger.list_payments()
    assert (record["kind"], record["inserted_minor"]) == (kind, rubles * 100)
    assert (record["provider_id"], record["account"]) == (provider, account)
    assert ledger_rows(after.ledger, "SELECT state, payment_id FROM sessions") == [
        ("finished", record["id"])]
    assert ledger_rows(after.ledger, "SELECT ref FROM outbox WHERE kind = 'payment'") == [
        (record["id"],)]
    kinds = {e["kind"]: e["data"] for e in after.ledger.recent_events()}
    if kind == "unclaimed":
        assert (record["commission_minor"], record["credited_minor"]) == (0, 0)
        assert kinds["unclaimed_credit"]["record_id"] == record["id"]
        assert "session_recovered" not in kinds
    else:
        assert record["credited_minor"] == rubles * 100 and "unclaimed_credit" not in kinds
    assert record["id"] in after.printer.texts()[-1]  # slip or receipt, printed at start
    after.engine.stop()


def test_cash_screen_without_cash_times_out_to_idle_and_abandons_session(term):
    term.to_cash()
    term.tick(term.engine.config.timeouts.cash_first_bill + 1)
    term.tick(term.engine.config.timeouts.prompt + 1)
    assert term.engine.screen.value == "idle"
    assert term.ledger.list_payments() == []


def test_cancel_allowed_before_cash_refused_after(term):
    term.to_cash()
    term.intent("cancel")
    assert term.engine.screen.value == "idle"
    term.to_cash()
    term.acceptor.insert(100)
    with pytest.raises(IntentError) as exc:
        term.intent("cancel")
    assert exc.value.code == "has_cash"


def test_pay_below_minimum_is_refused(term):
    term.to_cash(provider="rostelecom", account="123456789012")  # min 50 roubles
    term.acceptor.insert(10)
    with pytest.raises(IntentError) as exc:
        term.intent("pay")
    assert exc.value.code == "below_minimum"
    term.acceptor.insert(50)
    term.intent("pay")
    term.drain()
    assert term.engine.screen.value == "receipt"


def test_reaching_maximum_finishes_at_once(term, config):
    term.to_cash(provider="mts")
    for _ in range(3):
        term.acceptor.insert(5000)
    term.drain()
    assert term.engine.screen.value == "receipt"  # 15 000 is the maximum
    assert term.engine.last_payment["inserted_minor"] == 1_500_000


def test_printer_unavailable_warns_before_cash(term):
    term.printer.state = PrinterStatus.PAPER_OUT
    term.engine.check_printer_now()
    term.intent("select_provider", provider_id="mts")
    term.intent("submit_account", account=MTS_ACCOUNT)
    assert term.engine.snapshot()["printer_warning"] is True
    with pytest.raises(IntentError) as exc:
        term.intent("confirm_account")
    assert exc.value.code == "printer_warning"
    term.intent("accept_no_receipt")
    term.intent("confirm_account")
    term.acceptor.insert(100)
    term.intent("pay")
    term.drain()
    snap = term.engine.snapshot()
    assert snap["last_payment"]["receipt"] == "failed"
    assert snap["notice"]["code"] == "receipt_failed"
    assert snap["last_payment"]["payment_id"] in snap["notice"]["ru"]
    # the check code too: with the number it is what "check my payment" asks for
    code = snap["last_payment"]["check_code"]
    assert len(code) == 6 and code.isdigit()
    assert code in snap["notice"]["ru"] and code in snap["notice"]["en"]
    assert snap["notice"]["args"]["check_code"] == code
    events = [e["kind"] for e in term.ledger.recent_events()]
    assert "printer_unavailable" in events and "receipt_not_printed" in events


def test_printer_out_of_service_policy(tmp_path, clock):
    import dataclasses

    from tests.conftest import config_in

    base = config_in(tmp_path)
    cfg = dataclasses.replace(
        base, printer=dataclasses.replace(base.printer, unavailable_policy="out_of_service")
    )
    term = make_terminal(cfg, clock)
    term.printer.state = PrinterStatus.COVER_OPEN
    term.engine.check_printer_now()
    snap = term.engine.snapshot()
    assert snap["screen"] == "out_of_service"
    assert "8 800 555-35-35" in snap["out_of_service"]["ru"]
    assert snap["out_of_service"]["code"] == "oos_printer"
    term.printer.state = PrinterStatus.OK
    term.engine.check_printer_now()
    assert term.engine.screen.value == "idle"
    term.engine.stop()


def test_payment_status_check_hides_account(term):
    pid = term.pay(100)
    status = term.engine.payment_status(pid.lower())
    assert status["payment_id"] == pid
    assert status["status"] == "queued"
    assert status["account_tail"] == MTS_ACCOUNT[-4:]
    assert status["status_detail"] is None  # the desk has said nothing yet
    assert MTS_ACCOUNT not in str(status)
    with pytest.raises(IntentError):
        term.engine.payment_status("T0001-99999999")


def test_printer_checked_when_a_session_starts(term):
    """A printer that failed since the last idle poll is caught before cash goes in."""
    term.printer.state = PrinterStatus.PAPER_OUT
    term.intent("select_provider", provider_id="mts")
    term.drain()
    term.intent("submit_account", account=MTS_ACCOUNT)
    assert term.engine.snapshot()["printer_warning"] is True


def test_receipts_print_customer_words_not_technician_details(term):
    """A payment finished by a fault says so in customer words; the device detail (codes,
    driver text) stays with the technician and the desk."""
    from drivers.acceptor import AcceptorStatus

    term.to_cash()
    term.acceptor.insert(100)
    term.acceptor.set_status(AcceptorStatus.JAMMED, "0x43 validator jammed")
    term.drain()
    text = " ".join(term.printer.texts()[-1].split())  # words, whatever the line breaks
    assert "неисправности терминала" in text and "went out of service" in text
    assert "0x43" not in text and "jammed" not in text
    payment = term.ledger.list_payments()[0]
    assert "0x43" in payment["note"]  # the desk still sees why


def test_out_of_service_reason_follows_the_current_acceptor_fault(term):
    """One fault after another (a jam, then a table with no note of the terminal's
    currency): the technician's reason is the current one, not the first (issue 12)."""
    from drivers.acceptor import AcceptorStatus

    term.acceptor.set_status(AcceptorStatus.JAMMED, "jam in acceptor")
    assert term.engine.oos_reasons["acceptor"] == "bill acceptor: jammed jam in acceptor"
    term.acceptor.set_status(AcceptorStatus.FAILURE, "the bill acceptor can take no RUB note")
    assert term.engine.oos_reasons["acceptor"] == (
        "bill acceptor: failure the bill acceptor can take no RUB note")
    assert term.engine.snapshot()["out_of_service"]["reasons"] == ["acceptor"]
    term.acceptor.set_status(AcceptorStatus.DISABLED)
    assert "acceptor" not in term.engine.oos_reasons
