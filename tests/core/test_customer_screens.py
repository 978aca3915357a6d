"""What the core tells the customer's screen (issue 15): a fee that would swallow the
payment, notices that belong to their moment, the bill being checked, amounts as data,
the "continue?" prompt with cash inside, and the disclosures before any cash goes in.

A real SQLite ledger, the real engine, the acceptor and printer doubles (tests/core/harness.py).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.acceptor import EscrowDecision
from kiosk.catalog import DEMO_CATALOG, RUB, Catalog, CatalogError, CommissionBand, Provider
from kiosk.config import Config
from kiosk.engine import IntentError
from tests.config_files import write_config
from tests.conftest import ManualClock
from tests.core.harness import make_terminal

ROOT = Path(__file__).resolve().parents[2]

# A catalog of the defect: a 10 ₽ minimum and a fixed 10 ₽ fee, so one 10 ₽ note credits 0.
SWALLOWING = Provider(
    "mts", "МТС", "MTS", "mobile", "+7 (***) ***-**-**", r"9\d{9}", 10 * RUB, 15_000 * RUB,
    (CommissionBand(to_minor=500 * RUB, fixed_minor=10 * RUB),),
)


def swallowing_catalog() -> Catalog:
    return Catalog(providers=(SWALLOWING,), categories=DEMO_CATALOG.categories)


# -- 1. the fee can swallow the whole payment ---------------------------------------------
def test_a_catalog_whose_minimum_credits_nothing_is_refused():
    with pytest.raises(CatalogError) as exc:
        swallowing_catalog().validate()
    assert "provider 'mts'" in str(exc.value) and "would credit nothing" in str(exc.value)
    DEMO_CATALOG.validate()  # the shipped catalog credits something at every allowed amount
    for p in DEMO_CATALOG.providers:
        assert p.credited(p.min_minor) > 0, p.id


@pytest.mark.parametrize(
    "bands",
    [
        # a later band whose minimum fee meets its lower bound: zero credit at 500 ₽
        (CommissionBand(to_minor=500 * RUB, fixed_minor=10 * RUB),
         CommissionBand(from_minor=500 * RUB, min_minor=500 * RUB)),
        (CommissionBand(percent_bp=10_000),),  # 100 %: the fee is every payment
    ],
)
def test_zero_credit_anywhere_in_the_limits_is_refused(bands):
    p = dataclasses.replace(SWALLOWING, min_minor=50 * RUB, bands=bands)
    with pytest.raises(CatalogError):
        Catalog(providers=(p,), categories=DEMO_CATALOG.categories).validate()


def test_check_config_refuses_a_catalog_that_credits_nothing(tmp_path):
    config = write_config(tmp_path, """
[catalog]
categories = [{id = "mobile", name_ru = "Связь", name_en = "Mobile"}]
[[catalog.providers]]
id = "mts"
name_ru = "МТС"
name_en = "MTS"
category = "mobile"
account_mask = "+7 (***) ***-**-**"
account_pattern = "9\\\\d{9}"
min_minor = 1000
max_minor = 1500000
bands = [{to_minor = 50000, fixed_minor = 1000}]
""")
    done = subprocess.run([sys.executable, "-m", "kiosk", "check-config", "--config",
                           str(config)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(config) in lines[0] and "provider 'mts'" in lines[0]
    assert "would credit nothing" in lines[0] and "min_minor" in lines[0]


def test_pay_is_refused_when_the_fee_would_take_everything(config: Config,
                                                           clock: ManualClock):
    """A bad catalog that got past validation (the core's own last line): one 10 ₽ note
    credits nothing, so "pay" is refused with a code, the session keeps collecting and
    the customer can add cash (M1: the note is in the ledger; M5: it ends as a payment)."""
    term = make_terminal(dataclasses.replace(config, catalog=swallowing_catalog()), clock)
    try:
        term.to_cash()
        assert term.acceptor.insert(10) is EscrowDecision.STACK
        snap = term.snapshots[-1]["session"]
        assert (snap["inserted_minor"], snap["commission_minor"], snap["credited_minor"]) == (
            1_000, 1_000, 0)
        assert snap["can_pay"] is False and snap["pay_blocked"] == "no_credit"
        assert snap["fee_takes_all"] is True
        with pytest.raises(IntentError) as exc:
            term.intent("pay")
        assert exc.value.code == "no_credit"
        assert term.engine.screen.value == "cash"
        assert term.acceptor.enabled, "the acceptor still takes more cash"
        assert term.acceptor.insert(50) is EscrowDecision.STACK
        snap = term.snapshots[-1]["session"]
        assert snap["can_pay"] is True and snap["fee_takes_all"] is False
        term.intent("pay")
        term.drain()
        p = term.ledger.get_payment(term.engine.last_payment["payment_id"])
        assert (p["inserted_minor"], p["commission_minor"], p["credited_minor"]) == (
            6_000, 1_000, 5_000)
    finally:
        term.engine.stop()


def test_one_small_note_below_the_minimum_keeps_the_session_open(term):
    term.to_cash()
    term.acceptor.insert(10)
    snap = term.snapshots[-1]["session"]
    assert snap["pay_blocked"] == "below_minimum" and snap["fee_takes_all"] is True
    with pytest.raises(IntentError) as exc:
        term.intent("pay")
    assert exc.value.code == "below_minimum"
    assert 5_000 in term.acceptor.enabled  # more cash can go in


# -- 2. notices belong to the moment that made them ---------------------------------------
def test_a_rejected_bill_notice_ends_with_the_cash_screen(term):
    term.to_cash()
    term.acceptor.insert(5000)
    term.acceptor.insert(5000)
    term.engine.on_rejected("inhibited denomination")
    assert term.snapshots[-1]["notice"]["code"] == "bill_rejected"
    term.acceptor.insert(5000)  # the maximum: the payment finishes without any intent
    term.drain()
    snap = term.engine.snapshot()
    assert snap["screen"] == "receipt"
    assert snap["notice"] is None


def test_a_notice_between_customers_expires(term):
    """An unclaimed credit's notice is for the person who just left, not the next one."""
    term.to_cash()
    term.acceptor.insert(100)
    term.intent("pay")
    term.drain()
    term.intent("done")
    assert term.engine.screen.value == "idle"
    term.acceptor.report_stacked(100)  # a stray note: an unclaimed credit, a notice
    term.drain()
    notice = term.engine.snapshot()["notice"]
    assert notice["code"] == "unclaimed_credit"
    term.tick(term.engine.config.timeouts.receipt - 1)
    assert term.engine.snapshot()["notice"] is not None
    term.tick(2)
    assert term.engine.snapshot()["notice"] is None
    assert term.snapshots[-1]["notice"] is None  # and the screen was told


# -- 3. the bill being checked is published at once ---------------------------------------
def test_escrow_is_in_the_snapshot_before_the_bill_is_stacked(term):
    term.to_cash()
    before = len(term.snapshots)
    assert term.acceptor.escrow(500) is EscrowDecision.STACK
    assert len(term.snapshots) > before, "the escrow was published"
    session = term.snapshots[-1]["session"]
    assert session["escrow"] == {"amount_minor": 50_000, "currency": "RUB"}
    assert session["bill_in_escrow"] is True and session["inserted_minor"] == 0  # M1
    term.acceptor.report_stacked(500)
    session = term.snapshots[-1]["session"]
    assert session["escrow"] is None and session["inserted_minor"] == 50_000


# -- 5. amounts travel as data ------------------------------------------------------------
def test_notice_amounts_are_data_not_formatted_text(term):
    term.to_cash()
    for rubles in (5000, 5000, 2000, 2000):
        term.acceptor.insert(rubles)
    assert term.acceptor.escrow(2000) is EscrowDecision.RETURN  # 16 000 > maximum
    notice = term.snapshots[-1]["notice"]
    assert notice["code"] == "bill_over_max"
    assert notice["args"] == {"max": {"minor": 1_500_000, "currency": "RUB"}}
    assert "{max}" in notice["template"]["ru"] and "{max}" in notice["template"]["en"]
    assert "руб." not in notice["ru"] + notice["en"]
    assert "15000.00 RUB" in notice["en"]  # plain, for logs and command-line clients


# -- 6. the "continue?" prompt with cash inside -------------------------------------------
def test_the_prompt_with_cash_says_the_payment_completes_by_itself(term):
    term.to_cash()
    t = term.engine.config.timeouts
    term.tick(t.cash_first_bill + 1)
    assert term.engine.snapshot()["prompt"]["code"] == "continue_prompt"
    term.intent("continue")
    term.acceptor.insert(100)
    term.tick(t.cash_after_bill + 1)
    prompt = term.engine.snapshot()["prompt"]
    assert prompt["code"] == "continue_prompt_cash"
    assert "автоматически" in prompt["ru"] and "automatically" in prompt["en"]


# -- disclosures before any cash ----------------------------------------------------------
def test_confirm_screen_snapshot_discloses_fee_terms_limits_and_notes(term):
    term.intent("select_provider", provider_id="mts")
    term.intent("submit_account", account="9161234567")
    assert term.engine.screen.value == "confirm"
    s = term.snapshots[-1]["session"]
    assert s["provider"]["bands"][1] == {
        "from_minor": 50_000, "to_minor": None, "percent_bp": 300, "fixed_minor": 0,
        "min_minor": 1_000, "max_minor": 30_000}
    assert (s["provider"]["min_minor"], s["provider"]["max_minor"]) == (5_000, 1_500_000)
    assert s["accepted_notes_minor"] == [
        r * 100 for r in (10, 50, 100, 200, 500, 1000, 2000, 5000)]
    assert not term.acceptor.enabled, "disclosed, not enabled: no cash before the cash screen"
