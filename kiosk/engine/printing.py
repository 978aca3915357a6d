"""Printing and documents: receipts, slips, the printer's status and its policy.

All printer I/O runs on the engine's PrinterWorker (kiosk.engine.printer_worker), never
under the engine lock; the outcome is written back under the lock. Invariant M5
(docs/invariants.md): a receipt is printed only for a payment already finished in the
ledger, and `mark_receipt_printed` is recorded after the printer took it. Tests:
tests/printer/test_engine_policy.py, tests/core/test_engine_flow.py.
"""

from __future__ import annotations

from datetime import datetime

from drivers.printer import Document, PrinterError, PrinterStatus
from kiosk import receipts
from kiosk.engine.core import EngineCore, IntentError, log
from kiosk.ledger import LedgerError
from kiosk.messages import UNCLAIMED_FALLBACK, receipt_note
from kiosk.offers import Offer

PRINTER_POLL_S = 10.0
PRINT_WAIT_S = 60.0  # a technician's print waits this long for the printer thread


def receipt_offer(offer: Offer | None) -> receipts.OfferNote | None:
    """The top offer as the receipt prints it (kiosk/engine/offers.py chose it)."""
    if offer is None:
        return None
    return receipts.OfferNote(offer.title_ru, offer.title_en, offer.text_ru, offer.text_en)


class Printing(EngineCore):
    """Receipt jobs and printer status; a mixin of PaymentEngine (see kiosk.engine.core)."""

    # -- printing (off the lock, one printer thread) -----------------------------------
    def terminal_info(self) -> receipts.TerminalInfo:
        t = self.config.terminal
        return receipts.TerminalInfo(
            terminal_id=t.id,
            address=t.address,
            support_phone=self.support_phone,
            agent_name=t.agent_name,
            status_url=t.status_url,
            columns=self.printer.columns,  # the status link is laid out for this paper
        )

    def payment_document(self, payment_id: str, copy: bool,
                         offer: Offer | None = None) -> Document:
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
                    check_code=p.get("check_code"),
                ),
                copy=copy,
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
                check_code=p.get("check_code"),
                offer=receipt_offer(offer) if not copy else None,
            ),
            copy=copy,
        )

    def _print_payment(self, payment_id: str, copy: bool, offer: Offer | None = None) -> None:
        self.printer_worker.submit(self._print_job, payment_id, copy, offer)

    def _print_job(self, payment_id: str, copy: bool, offer: Offer | None = None) -> None:
        ok = False
        try:
            document = self.payment_document(payment_id, copy, offer)
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
            lp = self._last_payment
            if lp is not None and lp["payment_id"] == payment_id:
                lp["receipt"] = "printed" if ok else "failed"
                if not ok:
                    # the pair "check my payment" asks for, since no paper carries it
                    self._notice("receipt_failed", payment_id=payment_id,
                                 check_code=lp.get("check_code") or "—",
                                 phone=self.support_phone)
                self._publish()

    def _poll_printer(self) -> None:
        try:
            status = self.printer.status()
        except Exception:  # a status query that breaks means the printer is not usable
            log.exception("printer status query failed")
            status = PrinterStatus.OFFLINE
        with self._lock:
            self._printer_status_changed(status)

    def check_printer_now(self) -> None:
        """Query the printer on the calling thread and apply its status (start-up, tests)."""
        self._printer_checked = self._clock()
        self._poll_printer()

    def _poll_printer_soon(self) -> None:
        """A fresh printer status from the printer thread (the lock is held: no I/O here)."""
        self._printer_checked = self._clock()
        self.printer_worker.submit(self._poll_printer)

    def print_document(self, document: Document, timeout_s: float = PRINT_WAIT_S) -> bool:
        """Print on the printer thread and wait; False if it could not be printed."""
        future = self.printer_worker.submit(self.printer.print_document, document)
        try:
            future.result(timeout=timeout_s)
        except (PrinterError, OSError, TimeoutError):
            return False
        return True

    def _printer_status_changed(self, status: PrinterStatus) -> None:
        previous, self._printer_status = self._printer_status, status
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

