"""Check codes: "check my payment" and the customer's copy need the payment id AND its
check code; a wrong pair reveals nothing; failures and copies are limited in the core.

A real ledger file and the engine with device doubles; time is the engine's manual clock
(the one seam the limiter reads)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from kiosk import service
from kiosk.check_code import (
    CODE_DIGITS,
    CheckLimits,
    CheckRefused,
    code_matches,
    new_check_code,
)
from kiosk.engine import IntentError
from kiosk.ledger import PaymentKind
from tests.conftest import config_in
from tests.core.harness import Terminal, ledger_rows

LIMITS = CheckLimits()
REPO = Path(__file__).resolve().parents[2]


def _code(term: Terminal, payment_id: str) -> str:
    rows = ledger_rows(term.ledger, f"SELECT check_code FROM payments WHERE id = '{payment_id}'")
    return str(rows[0][0])


def _refusal(call) -> tuple[str, str]:
    with pytest.raises(CheckRefused) as err:
        call()
    return err.value.code, err.value.message


def _events(term: Terminal, kind: str) -> list[dict]:
    return [e["data"] for e in term.ledger.recent_events(200) if e["kind"] == kind]


# -- the code ----------------------------------------------------------------------------
def test_codes_are_six_random_digits() -> None:
    codes = [new_check_code() for _ in range(500)]
    assert all(len(c) == CODE_DIGITS and c.isdigit() for c in codes)
    assert len(set(codes)) > 490  # random, not a counter (a repeat now and then is fine)
    assert code_matches("048213", "048 213") and code_matches("048213", "048-213")
    assert not code_matches("048213", "48213")
    assert not code_matches(None, "") and not code_matches(None, "\0" * CODE_DIGITS)


def test_every_payment_gets_a_code_on_its_receipt_screen_and_for_the_desk(term: Terminal):
    pid = term.pay(500)
    code = _code(term, pid)
    assert len(code) == CODE_DIGITS and code.isdigit()
    receipt = term.printer.texts()[-1]
    assert pid in receipt and code in receipt and "Код проверки / Check code" in receipt
    shown = [s["last_payment"] for s in term.snapshots if s.get("last_payment")]
    assert shown[-1]["payment_id"] == pid and shown[-1]["check_code"] == code
    payload = ledger_rows(term.ledger, f"SELECT payload FROM outbox WHERE ref = '{pid}'")
    assert json.loads(payload[0][0])["check_code"] == code  # the desk can confirm a caller


# -- checking ----------------------------------------------------------------------------
def test_the_right_pair_shows_the_payment(term: Terminal):
    pid = term.pay(500, 100)
    status = service.check_payment(term.engine, pid.lower(), f" {_code(term, pid)} ")
    assert status["payment_id"] == pid and status["inserted_minor"] == 60_000
    assert status["account_tail"] == "4567"


def test_a_wrong_pair_reveals_nothing(term: Terminal):
    """Ids are sequential: a stranger typing 1, 2, 3 must learn nothing, not even whether
    a number exists. Every wrong pair gets the same code and the same words."""
    pid = term.pay(500)
    code = _code(term, pid)
    wrong = f"{(int(code) + 1) % 10**CODE_DIGITS:0{CODE_DIGITS}d}"
    with sqlite3.connect(term.ledger.path) as db:  # a payment from before check codes
        db.execute("UPDATE payments SET check_code = NULL WHERE id = ?", (pid,))
    old = pid
    pid2 = term.pay(100)
    code2 = _code(term, pid2)
    answers = {
        _refusal(lambda: service.check_payment(term.engine, pid2, wrong)),  # wrong code
        _refusal(lambda: service.check_payment(term.engine, "T0001-00000099", code2)),  # no id
        _refusal(lambda: service.check_payment(term.engine, old, code)),  # no code kept
        _refusal(lambda: service.check_payment(term.engine, old, "")),
    }
    assert len(answers) == 1
    assert answers.pop()[0] == "not_found"
    assert service.check_payment(term.engine, pid2, code2)["payment_id"] == pid2


def test_failures_pause_checking_then_it_comes_back(term: Terminal):
    pid = term.pay(500)
    code = _code(term, pid)
    for _ in range(LIMITS.max_failures - 1):
        assert _refusal(lambda: service.check_payment(term.engine, pid, "000000x"))[0] == (
            "not_found"
        )
    # The failure that reaches the limit starts the pause and says so.
    assert _refusal(lambda: service.check_payment(term.engine, "T0001-00000077", "1"))[0] == (
        "check_locked"
    )
    # Meanwhile even the right pair is refused: nothing is looked up.
    term.tick(LIMITS.cooldown_s - 1)
    locked = _refusal(lambda: service.check_payment(term.engine, pid, code))
    assert locked[0] == "check_locked" and "try again" in locked[1]
    assert _refusal(lambda: service.customer_reprint(term.engine, pid, code))[0] == "check_locked"
    assert _events(term, "payment_check_locked") == [
        {"failures": LIMITS.max_failures, "pause_s": LIMITS.cooldown_s}
    ]
    term.tick(1)
    assert service.check_payment(term.engine, pid, code)["payment_id"] == pid


def test_failures_older_than_the_window_do_not_count(term: Terminal):
    pid = term.pay(500)
    for _ in range(LIMITS.max_failures - 1):
        _refusal(lambda: service.check_payment(term.engine, pid, "x"))
    term.tick(LIMITS.window_s)
    for _ in range(LIMITS.max_failures - 1):
        assert _refusal(lambda: service.check_payment(term.engine, pid, "x"))[0] == "not_found"
    assert service.check_payment(term.engine, pid, _code(term, pid))["payment_id"] == pid


# -- the customer's copy -----------------------------------------------------------------
def test_customer_copy_after_a_check_is_marked_and_limited(term: Terminal):
    pid = term.pay(500)
    code = _code(term, pid)
    assert _refusal(lambda: service.customer_reprint(term.engine, pid, "1"))[0] == "not_found"
    printed = len(term.printer.printed)
    assert service.customer_reprint(term.engine, pid, code) == {"payment_id": pid, "printed": True}
    copy = term.printer.texts()[printed]
    assert "КОПИЯ / COPY" in copy and pid in copy and code in copy
    assert _events(term, "receipt_reprinted")[0] == {
        "payment_id": pid, "printed": True, "by": "customer",
    }
    # Not again at once, and not more than the quota of copies.
    assert _refusal(lambda: service.customer_reprint(term.engine, pid, code))[0] == (
        "reprint_limit"
    )
    for _ in range(LIMITS.copies_per_payment - 1):
        term.tick(LIMITS.reprint_interval_s)
        assert service.customer_reprint(term.engine, pid, code)["printed"] is True
    term.tick(LIMITS.reprint_interval_s)
    assert _refusal(lambda: service.customer_reprint(term.engine, pid, code))[0] == (
        "reprint_limit"
    )
    assert len(term.printer.printed) == printed + LIMITS.copies_per_payment


def test_customer_copy_is_refused_during_a_customer_session(term: Terminal):
    pid = term.pay(500)
    term.to_cash()
    with pytest.raises(IntentError) as err:
        service.customer_reprint(term.engine, pid, _code(term, pid))
    assert err.value.code == "busy"


def test_unclaimed_slip_reprint_is_marked_copy(term: Terminal):
    """Item: an unclaimed credit's slip printed again did not say КОПИЯ / COPY."""
    with term.ledger.transaction() as tx:
        record = tx.create_payment(PaymentKind.UNCLAIMED, 10_000, "RUB", "found after restart")
    result = service.reprint(term.engine, record.id)
    assert result["printed"] is True
    slip = term.printer.texts()[-1]
    assert "КОПИЯ / COPY" in slip and record.id in slip and _code(term, record.id) in slip


# -- the test page -----------------------------------------------------------------------
def test_test_page_names_the_printer_model(tmp_path: Path, term: Terminal):
    """Item: the test page said "escpos" (the kind) instead of the printer's model."""
    service.test_print(term.engine)
    assert "Принтер / Printer" in term.printer.texts()[-1]
    assert "virtual" in term.printer.texts()[-1]
    base = config_in(tmp_path)
    for profile, model in (
        ("custom_vkp80iii", "custom_vkp80iii"),
        (str(REPO / "firmware_profiles" / "printer_generic_58mm.toml"), "generic_58mm"),
    ):
        printer = dataclasses.replace(base.printer, kind="escpos", port="/dev/x", profile=profile)
        assert service.printer_model(dataclasses.replace(base, printer=printer)) == model
