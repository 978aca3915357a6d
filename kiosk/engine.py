"""The payment engine: one customer session at a time, money rules first.

It listens to the bill acceptor (drivers.acceptor.AcceptorListener), keeps the session
state machine (kiosk.screens), writes every money fact through the ledger, and publishes a
snapshot after every change. Devices are reached only through the two small interfaces in
drivers/. All state is guarded by one lock; device callbacks arrive on driver threads,
intents on the local-API thread, `tick()` on the main loop.

Invariants relied on here, and their tests (tests/core/test_engine_money.py):
M1 credit in on_stacked only; M2 on_stacked returns after the ledger commit and raises if
it failed; M3 escrow decisions in on_escrow; M4 _apply_acceptor after every change;
M5 finish before print; M6 reconcile at start; M9 commission capped by the ledger;
M10 _ledger_failed puts the terminal out of service and returns every bill.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from drivers.acceptor import AcceptorStatus, Bill, BillAcceptor, EscrowDecision, StackedBill
from drivers.printer import Document, PrinterError, PrinterStatus, ReceiptPrinter
from kiosk import receipts
from kiosk.catalog import Provider
from kiosk.config import Config
from kiosk.diskguard import DiskLevel, disk_level
from kiosk.ledger import Ledger, LedgerError, LedgerIdentityError
from kiosk.ledger.store import UNKNOWN_AMOUNT, UNKNOWN_BILL_TYPE
from kiosk.messages import UNCLAIMED_FALLBACK, message, money_text, receipt_note
from kiosk.screens import CANCELLABLE, PROMPTLESS, Screen, screen_timeout
from kiosk.technician import LOCKOUT_FILE, TechnicianAccess

log = logging.getLogger("kiosk.engine")

# Start-up reconciliation waits for these: a device still moving a bill (ACCEPTING) may be
# about to report it stacked, and that bill belongs to the session still open in the ledger.
SETTLE_STATUSES = frozenset(
    {AcceptorStatus.DISABLED, AcceptorStatus.IDLE}
    | {s for s in AcceptorStatus if s.is_fault and s is not AcceptorStatus.OFFLINE}
)
LEDGER_PROBE_S = 10.0
LEDGER_FILE_CHECK_S = 1.0  # is the ledger file still the one we write? (one stat)
STARTUP_SETTLE_S = 10.0
PRINTER_POLL_S = 10.0
DISK_CHECK_S = 60.0


class IntentError(Exception):
    """A customer or technician request that cannot be done now; code is stable."""

    def __init__(self, code: str, message_text: str) -> None:
        super().__init__(message_text)
        self.code = code


@dataclass
class CashSession:
    provider: Provider
    account: str = ""
    session_id: int | None = None  # ledger row, from account confirmation on
    inserted_minor: int = 0
    finishing: bool = False
    payment_id: str | None = None  # set once the payment is committed
    finish_note: str | None = None
    finish_deadline: float = 0.0


@dataclass
class PendingEscrow:
    escrow_id: int
    bill: Bill


class PaymentEngine:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        acceptor: BillAcceptor,
        printer: ReceiptPrinter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.acceptor = acceptor
        self.printer = printer
        self._clock = clock
        self._lock = threading.RLock()
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._printer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="printer")
        self.technician = TechnicianAccess(
            config.technician, clock, state_path=config.paths.data_dir / LOCKOUT_FILE
        )
        self.support_phone = config.terminal.support_phone
        self.help_texts: dict[str, dict[str, str]] = {}  # from the desk: {topic: {ru, en}}
        self.config_version: int | None = None  # the desk config applied, if any
        self.seq = 0
        self.screen = Screen.STARTING
        self.session: CashSession | None = None
        self.pending: PendingEscrow | None = None
        self.deadline = 0.0
        self.prompt_deadline: float | None = None
        self.no_receipt_accepted = False
        self.notice: dict[str, str] | None = None
        self.last_payment: dict[str, Any] | None = None
        self.oos_reasons: dict[str, str] = {}  # code -> technician detail
        self.acceptor_status = AcceptorStatus.INITIALIZING
        self.acceptor_detail = ""
        self.printer_status = PrinterStatus.OFFLINE
        self._printer_checked = -1e9
        self._acceptor_enabled: frozenset[int] | None = None
        self._started_at = 0.0
        self.reconciled = False
        self.acceptor_test: list[dict[str, Any]] | None = None  # bills seen in test mode
        self.disk = DiskLevel.OK
        self._stopping = False
        self._over_max_returning = False  # the next "returned" is the over-maximum bill
        self._ledger_probed = 0.0
        self._ledger_file_checked = -1e9
        self._disk_checked = -1e9
        self.restart_requested = False

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._started_at = self._clock()
        self.printer.start()
        self._check_printer_now()
        self.acceptor.start(self)
        self.tick()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True  # the driver's last "offline: stopped" is not a fault
        self.acceptor.stop()
        self._printer_pool.shutdown(wait=True)
        self.printer.stop()

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    # -- the clock ---------------------------------------------------------------------
    def tick(self) -> None:
        """Timeouts, start-up reconciliation, printer polling. Called every ~100 ms."""
        with self._lock:
            now = self._clock()
            if not self.reconciled and self.ledger.blocked is not None:
                # A ledger that is not this terminal's (missing, replaced): out of service
                # at once, nothing reconciled; a technician decides (docs/ledger.md).
                self.reconciled = True
                self.oos_reasons.pop("starting", None)
                self._ledger_failed(LedgerIdentityError(self.ledger.blocked))
                return
            if not self.reconciled:
                settled = self.acceptor_status in SETTLE_STATUSES
                if settled or now - self._started_at >= STARTUP_SETTLE_S:
                    self._reconcile()
                return
            if (
                "ledger" not in self.oos_reasons
                and now - self._ledger_file_checked >= LEDGER_FILE_CHECK_S
            ):
                self._ledger_file_checked = now
                try:
                    self.ledger.check_file()  # deleted or replaced under us (M10)
                except LedgerError as exc:
                    self._ledger_failed(exc)
            if "ledger" in self.oos_reasons and now - self._ledger_probed >= LEDGER_PROBE_S:
                self._ledger_probed = now
                self._probe_ledger()
            if now - self._disk_checked >= DISK_CHECK_S:
                self._disk_checked = now
                self._check_disk()
            # The bill table may arrive after the cash screen opened (a driver still in its
            # start-up sequence): re-derive the wanted mask; nothing is sent if unchanged.
            self._apply_acceptor()
            s = self.session
            if s is not None and s.finishing and s.payment_id is None:
                if self.pending is None or now >= s.finish_deadline:
                    self._finish()
                return
            if self.screen.is_customer and now >= self.deadline:
                self._on_deadline(now)
        if now - self._printer_checked >= PRINTER_POLL_S and self.screen in (
            Screen.IDLE,
            Screen.OUT_OF_SERVICE,
        ):
            self._printer_checked = now
            self._printer_pool.submit(self._poll_printer)

    def _on_deadline(self, now: float) -> None:
        screen = self.screen
        if screen in PROMPTLESS or (
            self.prompt_deadline is not None and now >= self.prompt_deadline
        ):
            self.prompt_deadline = None
            if screen is Screen.CASH and self.session is not None:
                if self.session.inserted_minor > 0 or self.pending is not None:
                    self._request_finish("customer timed out with cash inserted")
                else:
                    self._abandon()
            else:
                self._go_idle()
        elif self.prompt_deadline is None:
            self.prompt_deadline = now + self.config.timeouts.prompt
            self.deadline = self.prompt_deadline
            self._publish()

    # -- screens -----------------------------------------------------------------------
    def _set_screen(self, screen: Screen) -> None:
        self.screen = screen
        self.prompt_deadline = None
        self.deadline = self._clock() + screen_timeout(screen, self.config.timeouts)
        self._apply_acceptor()
        self._publish()

    def _go_idle(self) -> None:
        self.session = None
        self.no_receipt_accepted = False
        self._set_screen(Screen.OUT_OF_SERVICE if self.oos_reasons else Screen.IDLE)

    def _abandon(self) -> None:
        s = self.session
        if s is not None and s.session_id is not None:
            try:
                self.ledger.abandon_session(s.session_id)
            except LedgerError as exc:
                self._ledger_failed(exc)
                return
        self._go_idle()

    # -- acceptor control (M4) ---------------------------------------------------------
    def _wanted_denominations(self) -> frozenset[int]:
        if self.acceptor_test is not None:  # technician test: every bill, always returned
            return frozenset(b.amount_minor for b in self.acceptor.info.bill_table)
        s = self.session
        if (
            self.screen is not Screen.CASH
            or s is None
            or s.finishing
            or s.session_id is None
            or self.oos_reasons
        ):
            return frozenset()
        room = s.provider.max_minor - s.inserted_minor
        table = self.acceptor.info.bill_table
        return frozenset(
            b.amount_minor
            for b in table
            if b.amount_minor <= room and b.currency == s.provider.currency
        )

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
            if self.acceptor_test is not None:
                self.acceptor_test.append(
                    {
                        "amount_minor": bill.amount_minor,
                        "currency": bill.currency,
                        "bill_type": bill.bill_type,
                        "decision": "return",
                    }
                )
                self._publish()
                return EscrowDecision.RETURN  # a test never credits
            s = self.session
            if (
                self.screen is not Screen.CASH
                or s is None
                or s.session_id is None
                or s.finishing
                or self.oos_reasons
                or self.pending is not None
            ):
                return EscrowDecision.RETURN
            if bill.currency != s.provider.currency:
                return EscrowDecision.RETURN
            if s.inserted_minor + bill.amount_minor > s.provider.max_minor:
                self._notice("bill_over_max", max=money_text(s.provider.max_minor))
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
            self.pending = PendingEscrow(escrow_id, bill)
            self._touch()
            return EscrowDecision.STACK

    def on_stacked(self, stacked: StackedBill) -> None:
        with self._lock:
            bill = stacked.bill
            pending = self.pending
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
                self.pending = None
            s = self.session
            credited = (
                outcome.kind == "credited" and s is not None and s.session_id == outcome.session_id
            )
            if credited:
                s.inserted_minor = outcome.session_inserted_minor
                self._touch()
            if "ledger" in self.oos_reasons:  # that write worked: the disk is back
                self._ledger_probed = self._clock()
                self._probe_ledger()  # finishes this session, its cash now counted
            elif credited and s.inserted_minor >= s.provider.max_minor:
                self._request_finish("maximum amount reached")
            elif outcome.kind == "unclaimed" and outcome.unclaimed_id is not None and bill:
                # (a bill of unknown value gets no slip: no amount a customer could claim;
                # its record and event are for the technician who counts the cassette)
                self._print_payment(outcome.unclaimed_id, copy=False)  # the slip
                self._notice(
                    "unclaimed_credit",
                    amount=money_text(amount, currency),
                    record_id=outcome.unclaimed_id,
                    phone=self.support_phone,
                )
            self._apply_acceptor()
            self._publish()

    def on_returned(self, bill: Bill) -> None:
        with self._lock:
            pending = self.pending
            if pending is not None:
                self.pending = None
                try:
                    self.ledger.resolve_escrow(pending.escrow_id, "returned")
                except LedgerError as exc:
                    self._ledger_failed(exc)
            if self.screen is Screen.CASH and not self._over_max_returning:
                self._notice("bill_returned")  # over-maximum keeps its own, clearer notice
            self._over_max_returning = False
            self._publish()

    def on_rejected(self, reason: str) -> None:
        with self._lock:
            log.info("bill rejected: %s", reason)
            if self.screen is Screen.CASH:
                self._notice("bill_rejected")
                self._publish()

    def on_status(self, status: AcceptorStatus, detail: str) -> None:
        with self._lock:
            if self._stopping:
                return
            previous = self.acceptor_status
            if status is AcceptorStatus.INITIALIZING and self.pending is not None:
                # A reset gives back a bill in the validator without a "returned" report
                # (CCNET 0x11). Forget it here; its ledger escrow stays pending, so a bill
                # that went to the stacker after all (0x12 → 0x81) still finds its owner.
                self.pending = None
            self.acceptor_status, self.acceptor_detail = status, detail
            reason = f"bill acceptor: {status.value} {detail}".strip()
            if status.is_fault and not previous.is_fault:
                self._add_event(
                    "acceptor_fault", "error", {"status": status.value, "detail": detail}
                )
                self._set_oos("acceptor", reason)
            elif status.is_fault and self.oos_reasons.get("acceptor", reason) != reason:
                # one fault after another (a jam, then an unusable bill table): the
                # technician sees the current reason, not the first one
                self.oos_reasons["acceptor"] = reason
            elif not status.is_fault and previous.is_fault:
                self._add_event("acceptor_recovered", "info", {"status": status.value})
                self._clear_oos("acceptor")
            if status in (AcceptorStatus.INITIALIZING, AcceptorStatus.DISABLED):
                self._acceptor_enabled = None  # the device forgot its mask: send it again
                self._apply_acceptor()
            self._publish()

    # -- out of service (M10 and device faults) ----------------------------------------
    def _set_oos(self, code: str, detail: str) -> None:
        first = not self.oos_reasons
        self.oos_reasons[code] = detail
        log.warning("out of service: %s", detail)
        s = self.session
        if s is not None and s.session_id is not None and (s.inserted_minor or self.pending):
            self._request_finish(f"out of service: {detail}")
        elif self.screen is not Screen.RECEIPT and (
            first or self.screen is not Screen.OUT_OF_SERVICE
        ):
            if s is not None and s.session_id is not None and s.payment_id is None:
                try:  # a cash session that took nothing: close its ledger row now
                    self.ledger.abandon_session(s.session_id)
                except LedgerError as exc:
                    log.warning("session %s left for reconciliation: %s", s.session_id, exc)
            self.session = None
            self._set_screen(Screen.OUT_OF_SERVICE if self.reconciled else Screen.STARTING)
        self._apply_acceptor()

    def _clear_oos(self, code: str) -> None:
        cleared = self.oos_reasons.pop(code, None) is not None
        if cleared and not self.oos_reasons and self.screen is Screen.OUT_OF_SERVICE:
            self._set_screen(Screen.IDLE)

    def _ledger_failed(self, exc: Exception) -> None:
        log.error("ledger failure: %s", exc)
        identity = isinstance(exc, LedgerIdentityError)
        self.oos_reasons["ledger"] = f"ledger: {exc}" if identity else f"ledger cannot write: {exc}"
        self._acceptor_enabled = frozenset()
        self.acceptor.disable()
        self.screen = Screen.OUT_OF_SERVICE
        self.deadline = float("inf")
        self._publish()

    def _probe_ledger(self) -> None:
        """After a write failure (M10): try one small write; if the disk is back, finish
        the interrupted session (its cash is on disk) and return to service."""
        try:
            self.ledger.add_event("ledger_recovered", "info", {})
        except LedgerError:
            return
        log.warning("ledger writable again")
        del self.oos_reasons["ledger"]
        s = self.session
        if s is not None and s.session_id is not None and s.payment_id is None:
            if s.inserted_minor or self.pending is not None:
                s.finishing = False
                self._request_finish("finished after a ledger failure")
                return
            self._abandon()
            return
        self._go_idle()

    def ledger_reinitialised(self) -> None:
        """A technician started a new ledger (kiosk.service.ledger_init): try it now and
        return to service if it writes."""
        with self._lock:
            self._ledger_probed = self._clock()
            if "ledger" in self.oos_reasons:
                self._probe_ledger()
            self._publish()

    def _check_disk(self) -> None:
        try:
            level, free = disk_level(self.config.paths.data_dir)
        except OSError as exc:
            log.warning("disk check failed: %s", exc)
            return
        if level is self.disk:
            return
        self.disk = level
        self._add_event(
            "disk_" + level.value,
            "info" if level is DiskLevel.OK else "warning",
            {"free_bytes": free, "path": str(self.config.paths.data_dir)},
        )
        if level is DiskLevel.CRITICAL:
            self._set_oos("disk", f"disk almost full: {free // (1024 * 1024)} MiB free")
        else:
            self._clear_oos("disk")
        self._publish()

    # -- finishing a payment (M5) ------------------------------------------------------
    def _request_finish(self, note: str | None) -> None:
        """Close the cash session; `note` says why when it is not the customer's "pay"."""
        s = self.session
        if s is None or s.finishing:
            return
        s.finishing = True
        s.finish_note = note
        s.finish_deadline = self._clock() + self.config.timeouts.escrow_settle
        self._apply_acceptor()
        if self.pending is None:
            self._finish()
        else:
            self._publish()

    def _finish(self) -> None:
        s = self.session
        if s is None or s.session_id is None:
            return
        try:
            payment_id = self.ledger.finish_session(
                s.session_id, s.provider.commission, s.finish_note
            )
        except LedgerError as exc:
            self._ledger_failed(exc)
            return
        self.pending = None
        if payment_id is None:
            self._go_idle()
            return
        s.payment_id = payment_id
        payment = self.ledger.get_payment(payment_id) or {}
        self.last_payment = {
            "payment_id": payment_id,
            "provider_id": s.provider.id,
            "account": s.account,
            "inserted_minor": payment.get("inserted_minor", s.inserted_minor),
            "commission_minor": payment.get("commission_minor", 0),
            "credited_minor": payment.get("credited_minor", 0),
            "currency": s.provider.currency,
            "receipt": "printing",
        }
        self._set_screen(Screen.RECEIPT)
        self._print_payment(payment_id, copy=False)

    # -- printing (off the lock, one printer thread) -----------------------------------
    def terminal_info(self) -> receipts.TerminalInfo:
        t = self.config.terminal
        return receipts.TerminalInfo(
            terminal_id=t.id,
            address=t.address,
            support_phone=self.support_phone,
            agent_name=t.agent_name,
            status_url=t.status_url,
        )

    def payment_document(self, payment_id: str, copy: bool) -> Document:
        p = self.ledger.get_payment(payment_id)
        if p is None:
            raise IntentError("not_found", f"no payment {payment_id}")
        term = self.terminal_info()
        created = datetime.fromtimestamp(p["created_ms"] / 1000).astimezone()
        if p["kind"] == "unclaimed":
            return receipts.unclaimed_slip(
                term,
                receipts.UnclaimedData(
                    payment_id,
                    created,
                    p["inserted_minor"],
                    p["currency"],
                    receipt_note(p["note"]) or UNCLAIMED_FALLBACK,
                ),
            )
        provider = self.config.catalog.get(p["provider_id"])
        return receipts.payment_receipt(
            term,
            receipts.PaymentReceiptData(
                payment_id=payment_id,
                created_at=created,
                provider_name=provider.name_ru if provider else p["provider_id"],
                account=provider.format_account(p["account"]) if provider else p["account"],
                inserted_minor=p["inserted_minor"],
                commission_minor=p["commission_minor"],
                credited_minor=p["credited_minor"],
                currency=p["currency"],
                status_note=receipt_note(p["note"]),
            ),
            copy=copy,
        )

    def _print_payment(self, payment_id: str, copy: bool) -> None:
        self._printer_pool.submit(self._print_job, payment_id, copy)

    def _print_job(self, payment_id: str, copy: bool) -> None:
        ok = False
        try:
            document = self.payment_document(payment_id, copy)
            self.printer.print_document(document)
            ok = True
        except (PrinterError, OSError, LedgerError, IntentError) as exc:
            log.warning("receipt %s not printed: %s", payment_id, exc)
        except Exception:  # a printer bug must not take the receipt state with it
            log.exception("receipt %s not printed", payment_id)
        with self._lock:
            if ok and not copy:
                try:
                    self.ledger.mark_receipt_printed(payment_id)
                except LedgerError as exc:
                    self._ledger_failed(exc)
            if not ok:
                self._add_event("receipt_not_printed", "warning", {"payment_id": payment_id})
            lp = self.last_payment
            if lp is not None and lp["payment_id"] == payment_id:
                lp["receipt"] = "printed" if ok else "failed"
                if not ok:
                    self._notice("receipt_failed", payment_id=payment_id, phone=self.support_phone)
                self._publish()

    def _poll_printer(self) -> None:
        try:
            status = self.printer.status()
        except Exception:  # a status query that breaks means the printer is not usable
            log.exception("printer status query failed")
            status = PrinterStatus.OFFLINE
        with self._lock:
            self._printer_status_changed(status)

    def _check_printer_now(self) -> None:
        self._printer_checked = self._clock()
        self._poll_printer()

    def _printer_status_changed(self, status: PrinterStatus) -> None:
        previous, self.printer_status = self.printer_status, status
        if status is previous:
            return
        if status is PrinterStatus.PAPER_NEAR_END:
            self._add_event("printer_paper_near_end", "warning", {})
        elif not status.can_print:
            self._add_event("printer_unavailable", "warning", {"status": status.value})
        policy_oos = self.config.printer.unavailable_policy == "out_of_service"
        if policy_oos and not status.can_print:
            self._set_oos("printer", f"printer: {status.value}")
        elif status.can_print:
            self._clear_oos("printer")
        self._publish()

    # -- start-up reconciliation (M6) --------------------------------------------------
    def _reconcile(self) -> None:
        def commission_for(provider_id: str) -> Callable[[int], int]:
            p = self.config.catalog.get(provider_id)
            return p.commission if p is not None else (lambda _amount: 0)

        try:
            report = self.ledger.reconcile(commission_for)
        except LedgerError as exc:
            self.reconciled = True
            self._ledger_failed(exc)
            return
        self.reconciled = True
        for record_id in report.unclaimed_records + report.recovered_payments:
            self._print_payment(record_id, copy=False)
        self.oos_reasons.pop("starting", None)
        self._go_idle()

    # -- helpers -----------------------------------------------------------------------
    def _touch(self) -> None:
        """Customer activity: restart the screen timer (cash screen: the after-bill one)."""
        if self.screen.is_customer:
            self.prompt_deadline = None
            t = self.config.timeouts
            s = self.session
            if self.screen is Screen.CASH and s is not None and s.inserted_minor > 0:
                self.deadline = self._clock() + t.cash_after_bill
            else:
                self.deadline = self._clock() + screen_timeout(self.screen, t)

    def _notice(self, code: str, **values: Any) -> None:
        self.notice = message(code, **values)

    def _add_event(self, kind: str, severity: str, data: dict[str, Any]) -> None:
        if "ledger" in self.oos_reasons:
            log.error("event not recorded (ledger down): %s %s", kind, data)
            return
        try:
            self.ledger.add_event(kind, severity, data)
        except LedgerError as exc:
            self._ledger_failed(exc)

    def _publish(self) -> None:
        self.seq += 1
        snap = self.snapshot()
        for callback in list(self._subscribers):
            try:
                callback(snap)
            except Exception:
                log.exception("snapshot subscriber failed")

    # -- for technician and desk operations (kiosk/service.py, sync/) -------------------
    @property
    def lock(self) -> threading.RLock:
        """Hold it to read or change engine state from another module."""
        return self._lock

    def set_out_of_service(self, code: str, detail: str) -> None:
        with self._lock:
            self._set_oos(code, detail)
            self._publish()

    def clear_out_of_service(self, code: str) -> None:
        with self._lock:
            self._clear_oos(code)
            self._publish()

    def record_event(self, kind: str, severity: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._add_event(kind, severity, data)

    def publish(self) -> None:
        with self._lock:
            self._publish()

    def set_support_phone(self, phone: str) -> None:
        """A new call-center number: on every screen at once, on the next receipt."""
        with self._lock:
            self.support_phone = phone
            self._publish()

    def print_document(self, document: Document, timeout_s: float = 60.0) -> bool:
        """Print on the printer thread and wait; False if it could not be printed."""
        future = self._printer_pool.submit(self.printer.print_document, document)
        try:
            future.result(timeout=timeout_s)
        except (PrinterError, OSError, TimeoutError):
            return False
        return True

    # -- customer intents (from the local API) -----------------------------------------
    def intent(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Apply one customer intent; raises IntentError with a stable code when refused."""
        handler = self._INTENTS.get(name)
        if handler is None:
            raise IntentError("unknown_intent", f"unknown intent {name!r}")
        with self._lock:
            self.notice = None
            if self.prompt_deadline is not None and name != "continue":
                self.prompt_deadline = None
            result = handler(self, args) or {}
            self._touch()
            self._publish()
            return result

    def _need(self, *screens: Screen) -> None:
        if self.screen not in screens:
            raise IntentError("wrong_screen", f"not possible on the {self.screen.value} screen")

    def _i_start(self, args: dict[str, Any]) -> None:
        self._need(Screen.IDLE)
        self._set_screen(Screen.PROVIDER)

    def _i_select_provider(self, args: dict[str, Any]) -> None:
        self._need(Screen.IDLE, Screen.PROVIDER)
        provider = self.config.catalog.get(str(args.get("provider_id", "")))
        if provider is None:
            raise IntentError("unknown_provider", f"no provider {args.get('provider_id')!r}")
        self.session = CashSession(provider)
        self._set_screen(Screen.ACCOUNT)
        # A fresh printer status before any cash goes in (the confirm screen warns).
        self._printer_checked = self._clock()
        self._printer_pool.submit(self._poll_printer)

    def _i_set_account(self, args: dict[str, Any]) -> None:
        self._need(Screen.ACCOUNT)
        assert self.session is not None
        account = args.get("account", "")
        limit = self.session.provider.account_length
        if not isinstance(account, str) or (
            account and not (account.isascii() and account.isdigit())
        ):  # "９" and "٣" are digits to str.isdigit(), never to a provider
            raise IntentError("bad_account", "the account is digits 0-9 only")
        if len(account) > limit:
            raise IntentError("bad_account", f"the account has at most {limit} digits")
        self.session.account = account

    def _i_submit_account(self, args: dict[str, Any]) -> None:
        if "account" in args:
            self._i_set_account(args)
        self._need(Screen.ACCOUNT)
        assert self.session is not None
        if not self.session.provider.validate_account(self.session.account):
            raise IntentError("invalid_account", "this number is not valid for the provider")
        self._set_screen(Screen.CONFIRM)

    def _i_back(self, args: dict[str, Any]) -> None:
        self._need(Screen.ACCOUNT, Screen.CONFIRM, Screen.PROVIDER)
        if self.screen is Screen.CONFIRM:
            self._set_screen(Screen.ACCOUNT)
        elif self.screen is Screen.ACCOUNT:
            self.session = None
            self._set_screen(Screen.PROVIDER)
        else:
            self._go_idle()

    def _i_accept_no_receipt(self, args: dict[str, Any]) -> None:
        self.no_receipt_accepted = True

    def _i_confirm_account(self, args: dict[str, Any]) -> None:
        self._need(Screen.CONFIRM)
        s = self.session
        assert s is not None
        if self.oos_reasons:
            raise IntentError("out_of_service", "the terminal is out of service")
        if not self.printer_status.can_print and not self.no_receipt_accepted:
            raise IntentError("printer_warning", "no receipt can be printed: accept first")
        try:
            s.session_id = self.ledger.open_session(s.provider.id, s.account, s.provider.currency)
        except LedgerError as exc:
            self._ledger_failed(exc)
            raise IntentError("out_of_service", "the terminal is out of service") from exc
        self._set_screen(Screen.CASH)

    def _i_pay(self, args: dict[str, Any]) -> None:
        self._need(Screen.CASH)
        s = self.session
        assert s is not None
        if s.inserted_minor == 0:
            raise IntentError("no_cash", "insert a bill first")
        if s.inserted_minor < s.provider.min_minor:
            raise IntentError(
                "below_minimum", f"insert at least {money_text(s.provider.min_minor)}"
            )
        self._request_finish(None)

    def _i_cancel(self, args: dict[str, Any]) -> None:
        if self.screen in CANCELLABLE:
            self._go_idle()
            return
        self._need(Screen.CASH)
        s = self.session
        assert s is not None
        if s.inserted_minor > 0 or self.pending is not None or s.finishing:
            raise IntentError("has_cash", "money is inside: the payment cannot be cancelled")
        self._abandon()

    def _i_continue(self, args: dict[str, Any]) -> None:
        self.prompt_deadline = None

    def _i_done(self, args: dict[str, Any]) -> None:
        self._need(Screen.RECEIPT)
        self._go_idle()

    _INTENTS: ClassVar[dict[str, Callable[[PaymentEngine, dict[str, Any]], Any]]] = {
        "start": _i_start,
        "select_provider": _i_select_provider,
        "set_account": _i_set_account,
        "submit_account": _i_submit_account,
        "back": _i_back,
        "accept_no_receipt": _i_accept_no_receipt,
        "confirm_account": _i_confirm_account,
        "pay": _i_pay,
        "cancel": _i_cancel,
        "continue": _i_continue,
        "done": _i_done,
    }

    def payment_status(self, payment_id: str) -> dict[str, Any]:
        """What a customer may see of a payment ("check my payment"): no account digits."""
        p = self.ledger.get_payment(payment_id.strip().upper())
        if p is None:
            raise IntentError("not_found", "no payment with this number on this terminal")
        provider = self.config.catalog.get(p["provider_id"] or "")
        account = p["account"] or ""
        return {
            "payment_id": p["id"],
            "kind": p["kind"],
            "status": p["status"],
            "provider": {"name_ru": provider.name_ru, "name_en": provider.name_en}
            if provider
            else None,
            "account_tail": account[-4:],
            "inserted_minor": p["inserted_minor"],
            "credited_minor": p["credited_minor"],
            "currency": p["currency"],
            "created_ms": p["created_ms"],
            "updated_ms": p["updated_ms"],
        }

    # -- snapshot ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            s = self.session
            session = None
            if s is not None:
                p = s.provider
                fee = p.commission(s.inserted_minor)
                session = {
                    "provider": {
                        "id": p.id,
                        "name_ru": p.name_ru,
                        "name_en": p.name_en,
                        "account_mask": p.account_mask,
                        "min_minor": p.min_minor,
                        "max_minor": p.max_minor,
                        "currency": p.currency,
                    },
                    "account": s.account,
                    "account_display": p.format_account(s.account),
                    "account_valid": p.validate_account(s.account),
                    "inserted_minor": s.inserted_minor,
                    "commission_minor": fee,
                    "credited_minor": s.inserted_minor - fee,
                    "bill_in_escrow": self.pending is not None,
                    "finishing": s.finishing,
                    "can_pay": s.inserted_minor >= p.min_minor and not s.finishing,
                    "can_cancel": s.inserted_minor == 0 and self.pending is None,
                }
            oos = None
            if self.screen in (Screen.OUT_OF_SERVICE, Screen.STARTING):
                code = (
                    "oos_starting"
                    if self.screen is Screen.STARTING
                    else _oos_code(self.oos_reasons)
                )
                oos = {
                    "reasons": sorted(self.oos_reasons),
                    **message(code, phone=self.support_phone),
                }
            return {
                "seq": self.seq,
                "screen": self.screen.value,
                "terminal": {
                    "id": self.config.terminal.id,
                    "support_phone": self.support_phone,
                    "address": self.config.terminal.address,
                },
                "session": session,
                "prompt": (
                    {
                        "kind": "continue",
                        "remaining_s": max(0, round(self.prompt_deadline - now)),
                        **message("continue_prompt"),
                    }
                    if self.prompt_deadline is not None
                    else None
                ),
                "notice": self.notice,
                "printer": {
                    "status": self.printer_status.value,
                    "can_print": self.printer_status.can_print,
                },
                "printer_warning": (
                    not self.printer_status.can_print and not self.no_receipt_accepted
                ),
                "acceptor": {"status": self.acceptor_status.value},
                "out_of_service": oos,
                "last_payment": dict(self.last_payment) if self.last_payment else None,
                "help_texts": self.help_texts,
                "config_version": self.config_version,
            }


def _oos_code(reasons: dict[str, str]) -> str:
    for code in ("service", "acceptor", "printer"):
        if code in reasons:
            return f"oos_{code}"
    return "oos_generic"
