"""Cash collection: acceptor control, escrow decisions, credit, finishing, reconciliation.

The money path of the engine. Invariants carried here (docs/invariants.md), with the tests
that guard them in tests/core/test_engine_money.py and tests/acceptors/test_same_story.py:
M1 credit happens in on_stacked only, from the ledger's committed figure; M2 on_stacked
returns after the ledger commit and raises if it failed (the driver must not ACK);
M3 every escrow decision is taken in on_escrow (return unless a collecting session has
room); M4 _apply_acceptor after every change (the device accepts only what may be
credited); M5 a payment is finished in the ledger before its receipt is printed; M6 the
start-up reconciliation finishes what a crash left open.
"""

from __future__ import annotations

from collections.abc import Callable

from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision, StackedBill
from kiosk.engine.core import EngineCore, PendingEscrow, SeenBill, log
from kiosk.ledger import LedgerError
from kiosk.ledger.store import UNCLAIMED_UNPAYABLE, UNKNOWN_AMOUNT, UNKNOWN_BILL_TYPE
from kiosk.messages import Money
from kiosk.screens import Screen


class CashCollection(EngineCore):
    """The AcceptorListener half of the engine (called on the driver's thread) and the
    finishing of a cash session; a mixin of PaymentEngine (see kiosk.engine.core)."""

    # -- acceptor control (M4) ---------------------------------------------------------
    def _wanted_denominations(self) -> frozenset[int]:
        if self._acceptor_test is not None:  # technician test: every bill, always returned
            return frozenset(b.amount_minor for b in self.acceptor.info.bill_table)
        s = self._session
        if (
            self._screen is not Screen.CASH
            or s is None
            or s.finishing
            or s.session_id is None
            or self._oos_reasons
        ):
            return frozenset()
        return self._acceptable_notes(s)

    def _apply_acceptor(self) -> None:
        wanted = self._wanted_denominations()
        if wanted == self._acceptor_enabled:
            return
        self._acceptor_enabled = wanted
        if wanted:
            self.acceptor.enable(wanted)
        else:
            self.acceptor.disable()

    # -- AcceptorListener: called on the driver's thread -------------------------------
    def on_escrow(self, bill: Bill) -> EscrowDecision:
        with self._lock:
            if self._acceptor_test is not None:
                self._acceptor_test.append(
                    SeenBill(bill.amount_minor, bill.currency, bill.bill_type, "return")
                )
                self._publish()
                return EscrowDecision.RETURN  # a test never credits
            s = self._session
            if (
                self._screen is not Screen.CASH
                or s is None
                or s.session_id is None
                or s.finishing
                or self._oos_reasons
                or self._pending is not None
            ):
                return EscrowDecision.RETURN
            if bill.currency != s.provider.currency:
                return EscrowDecision.RETURN
            if s.inserted_minor + bill.amount_minor > s.provider.max_minor:
                self._notice(
                    "bill_over_max", max=Money(s.provider.max_minor, s.provider.currency)
                )
                self._over_max_returning = True
                self._publish()
                return EscrowDecision.RETURN
            try:
                escrow_id = self.ledger.record_escrow(
                    s.session_id, bill.amount_minor, bill.currency, bill.bill_type
                )
            except LedgerError as exc:
                self._ledger_failed(exc)
                return EscrowDecision.RETURN
            self._pending = PendingEscrow(escrow_id, bill)
            self._touch()
            # The customer sees "checking the banknote" now, not when stacking ends.
            self._publish()
            return EscrowDecision.STACK

    def on_stacked(self, stacked: StackedBill) -> None:
        with self._lock:
            bill = stacked.bill
            pending = self._pending
            escrow_id = None
            if bill is None:  # the device did not name it: the ledger records it as unknown
                amount, currency, bill_type = (
                    UNKNOWN_AMOUNT, stacked.currency or self.config.terminal.currency,
                    UNKNOWN_BILL_TYPE)
            else:
                amount, currency, bill_type = bill.amount_minor, bill.currency, bill.bill_type
                if pending is not None and pending.bill.amount_minor == amount:
                    escrow_id = pending.escrow_id
            try:
                outcome = self.ledger.record_stacked(
                    stacked.event_key, amount, currency, bill_type, stacked.origin, escrow_id
                )
            except LedgerError as exc:
                self._ledger_failed(exc)
                raise  # the driver must not ACK (M2): the device will report it again
            if escrow_id is not None:
                self._pending = None
            s = self._session
            credited = (
                outcome.kind == "credited" and s is not None and s.session_id == outcome.session_id
            )
            if credited and s is not None:  # (credited implies a session: for mypy)
                s.inserted_minor = outcome.session_inserted_minor
                self._touch()
            if "ledger" in self._oos_reasons:  # that write worked: the disk is back
                self._ledger_probed = self._clock()
                self._probe_ledger()  # finishes this session, its cash now counted
            elif credited and s is not None and s.inserted_minor >= s.provider.max_minor:
                self._request_finish("maximum amount reached")
            elif outcome.kind == "unclaimed" and outcome.unclaimed_id is not None and bill:
                # (a bill of unknown value gets no slip: no amount a customer could claim;
                # its record and event are for the technician who counts the cassette)
                self._print_payment(outcome.unclaimed_id, copy=False)  # the slip
                self._notice(
                    "unclaimed_credit",
                    amount=Money(amount, currency),
                    record_id=outcome.unclaimed_id,
                    phone=self.support_phone,
                )
            self._apply_acceptor()
            self._publish()

    def on_returned(self, bill: Bill) -> None:
        with self._lock:
            pending = self._pending
            if pending is not None:
                self._pending = None
                try:
                    self.ledger.resolve_escrow(pending.escrow_id, "returned")
                except LedgerError as exc:
                    self._ledger_failed(exc)
            if self._screen is Screen.CASH and self._session is not None:
                self._session.rejected_bills += 1
            if self._screen is Screen.CASH and not self._over_max_returning:
                self._notice("bill_returned")  # over-maximum keeps its own, clearer notice
            self._over_max_returning = False
            self._publish()

    def on_rejected(self, reason: str) -> None:
        with self._lock:
            log.info("bill rejected: %s", reason)
            if self._screen is Screen.CASH:
                if self._session is not None:
                    self._session.rejected_bills += 1
                self._notice("bill_rejected")
                self._publish()

    def on_status(self, status: AcceptorStatus, detail: str) -> None:
        with self._lock:
            if self._stopping:
                return
            previous = self._acceptor_status
            if status is AcceptorStatus.INITIALIZING and self._pending is not None:
                # A reset gives back a bill in the validator without a "returned" report
                # (CCNET 0x11). Forget it here; its ledger escrow stays pending, so a bill
                # that went to the stacker after all (0x12 → 0x81) still finds its owner.
                self._pending = None
            self._acceptor_status, self._acceptor_detail = status, detail
            reason = f"bill acceptor: {status.value} {detail}".strip()
            if status.is_fault and not previous.is_fault:
                self._add_event(
                    "acceptor_fault", "error", {"status": status.value, "detail": detail}
                )
                self._set_oos("acceptor", reason)
            elif status.is_fault and self._oos_reasons.get("acceptor", reason) != reason:
                # one fault after another (a jam, then an unusable bill table): the
                # technician sees the current reason, not the first one
                self._oos_reasons["acceptor"] = reason
            elif not status.is_fault and previous.is_fault:
                self._add_event("acceptor_recovered", "info", {"status": status.value})
                self._clear_oos("acceptor")
            if status in (AcceptorStatus.INITIALIZING, AcceptorStatus.DISABLED):
                self._acceptor_enabled = None  # the device forgot its mask: send it again
                self._apply_acceptor()
            self._publish()


    # -- finishing a payment (M5) ------------------------------------------------------
    def _request_finish(self, note: str | None) -> None:
        """Close the cash session; `note` says why when it is not the customer's "pay"."""
        s = self._session
        if s is None or s.finishing:
            return
        s.finishing = True
        s.finish_note = note
        s.finish_deadline = self._clock() + self.config.timeouts.escrow_settle
        self._apply_acceptor()
        if self._pending is None:
            self._finish()
        else:
            self._publish()

    def _finish(self) -> None:
        s = self._session
        if s is None or s.session_id is None:
            return
        if s.unpayable:
            # Not a payment the provider takes (below its minimum), or one the fee would
            # swallow whole: the customer never pressed "pay" for it (the pay intent
            # refuses both), they left or the terminal stopped. The cash becomes an
            # unclaimed credit a desk resolves, never a zero-credit payment (M5, M6, M9).
            self._finish_unclaimed(s.session_id, s.provider.currency)
            return
        try:
            payment_id = self.ledger.finish_session(
                s.session_id, s.provider.commission, s.finish_note
            )
        except LedgerError as exc:
            self._ledger_failed(exc)
            return
        self._pending = None
        if payment_id is None:
            self._go_idle()
            return
        s.payment_id = payment_id
        payment = self.ledger.get_payment(payment_id) or {}
        self._last_payment = {
            "payment_id": payment_id,
            "provider_id": s.provider.id,
            "account": s.account,
            "inserted_minor": payment.get("inserted_minor", s.inserted_minor),
            "commission_minor": payment.get("commission_minor", 0),
            "credited_minor": payment.get("credited_minor", 0),
            "currency": s.provider.currency,
            # On the receipt screen too: a customer without a receipt must still be able
            # to check the payment ("check my payment" asks for id and code).
            "check_code": payment.get("check_code"),
            "receipt": "printing",
        }
        # Offers only now, the payment committed (M5); pure and cheap, so the receipt
        # job below is not held up; its record is queued behind the receipt.
        pick = self._pick_offers(s, self._last_payment["inserted_minor"])
        self._set_screen(Screen.RECEIPT)
        self._print_payment(payment_id, copy=False,
                            offer=pick.choice.top if pick is not None else None)
        self._offers_shown(pick)


    def _finish_unclaimed(self, session_id: int, currency: str) -> None:
        """Close the session as an unclaimed-credit record for all of its cash, in one
        transaction (Ledger.unclaim_session: record, bills, session, outbox, event), then
        the slip and the notice, as for any unclaimed credit (docs/ledger.md)."""
        try:
            found = self.ledger.unclaim_session(session_id, UNCLAIMED_UNPAYABLE)
        except LedgerError as exc:
            self._ledger_failed(exc)
            return
        self._pending = None
        self._go_idle()
        if found is None:
            return
        record_id, amount = found
        self._print_payment(record_id, copy=False)  # the slip: the number and the phone
        self._notice("unclaimed_credit", amount=Money(amount, currency), record_id=record_id,
                     phone=self.support_phone)
        self._publish()

    # -- start-up reconciliation (M6) --------------------------------------------------
    def _reconcile(self) -> None:
        def commission_for(provider_id: str) -> Callable[[int], int]:
            p = self.config.catalog.get(provider_id)
            return p.commission if p is not None else (lambda _amount: 0)

        def payable(provider_id: str, cash: int) -> bool:
            p = self.config.catalog.get(provider_id)
            return p is None or (cash >= p.min_minor and p.credited(cash) > 0)

        try:
            report = self.ledger.reconcile(commission_for, payable)
        except LedgerError as exc:
            self._reconciled = True
            self._ledger_failed(exc)
            return
        self._reconciled = True
        for record_id in report.unclaimed_records + report.recovered_payments:
            self._print_payment(record_id, copy=False)
        self._oos_reasons.pop("starting", None)
        self._go_idle()

