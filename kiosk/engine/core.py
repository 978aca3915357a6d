"""The engine's state, its one lock, and the small helpers every concern shares.

`EngineCore` holds all session, device and service state of the payment engine. The
concerns (kiosk.engine.cash, .session, .service_state, .printing) are one-level mixins over
it, and `PaymentEngine` (kiosk.engine.payment_engine) combines them. Mixins, not helper
objects, because the concerns are not independent: they share one state under one lock
and call each other inside one critical section (a stacked bill may finish the session, a
ledger failure takes the screen out of service, finishing prints). Helper objects would
each need the whole engine back, which is the same coupling with more indirection. The
methods one concern calls in another are declared here, so each module type-checks alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from drivers.acceptor import AcceptorStatus, Bill, BillAcceptor
from drivers.printer import PrinterStatus, ReceiptPrinter
from kiosk.catalog import Provider
from kiosk.check_code import CheckLimiter
from kiosk.coded_error import CodedError
from kiosk.config import Config
from kiosk.device_health import (
    DEVICES,
    PROBLEM_SEVERITIES,
    DeviceError,
    SyncState,
    error_detail,
    group_of,
)
from kiosk.diskguard import DiskLevel
from kiosk.engagement import Engagement, OfferPick
from kiosk.engine.printer_worker import PrinterWorker
from kiosk.help_center import HelpCenter, default_help_center
from kiosk.ledger import Ledger, LedgerError
from kiosk.messages import message
from kiosk.offers import Offer
from kiosk.screens import Screen, screen_timeout
from kiosk.technician import LOCKOUT_FILE, TechnicianAccess

log = logging.getLogger("kiosk.engine")

RECENT_NOTICES = 3  # notice codes a session keeps for the help view


class IntentError(CodedError):
    """A customer or technician request that cannot be done now; code is stable."""


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
    rejected_bills: int = 0  # returned or refused bills (proactive help reads it)
    notices: tuple[str, ...] = ()  # the last notice codes shown (the operator's help view)

    @property
    def unpayable(self) -> bool:
        """Cash inside that no payment may be made of: under the provider's minimum, or
        all of it taken by the fee. Ended without the customer, it is an unclaimed credit
        (kiosk.engine.cash), never a payment."""
        return self.inserted_minor > 0 and (
            self.inserted_minor < self.provider.min_minor
            or self.provider.credited(self.inserted_minor) <= 0
        )


@dataclass
class PendingEscrow:
    escrow_id: int
    bill: Bill


@dataclass(frozen=True)
class SeenBill:
    """A bill read during the technician's acceptor test (always returned)."""

    amount_minor: int
    currency: str
    bill_type: int
    decision: str = "return"


class EngineCore:
    """State and shared helpers. The state is private: other modules read it through the
    properties below (or the frozen `status()`) and change it only through the public
    methods of PaymentEngine. Every underscored method expects the caller to hold the lock."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        acceptor: BillAcceptor,
        printer: ReceiptPrinter,
        clock: Callable[[], float] = time.monotonic,
        printer_worker: PrinterWorker | None = None,
    ) -> None:
        self._config = config
        self.ledger = ledger
        self.acceptor = acceptor
        self.printer = printer
        self._clock = clock
        self._lock = threading.RLock()
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        # Every printer job and status query runs here, so the lock is never held across
        # printer I/O; tests pass their own worker to wait for its jobs (drain()).
        self.printer_worker = printer_worker if printer_worker is not None else PrinterWorker()
        self.technician = TechnicianAccess(
            config.technician, clock, state_path=config.paths.data_dir / LOCKOUT_FILE
        )
        # "Check my payment" and customer reprints: wrong id/code pairs and copies are
        # limited here, in the core, on the engine's clock (kiosk/check_code.py).
        self.check_limiter = CheckLimiter(clock)
        self._support_phone = config.terminal.support_phone
        # For the technician's status page: the desk link as the sync agent reports it,
        # and each device's last error since start (kiosk.device_health).
        self._sync_state = SyncState(enabled=config.mqtt.enabled, since_ms=self.ledger.now_ms())
        self._device_errors: dict[str, DeviceError] = {}
        self._help_texts: dict[str, dict[str, str]] = {}  # from the desk: {topic: {ru, en}}
        # the desk's help center, or the shipped one; the help code of the customer who
        # opened help (terminal + session, for the operator: docs/self-service.md)
        self._help_center: HelpCenter = default_help_center()
        self._help_code: str | None = None
        self._config_version: int | None = None  # the desk config applied, if any
        self._seq = 0
        self._screen = Screen.STARTING
        self._session: CashSession | None = None
        self._pending: PendingEscrow | None = None
        self._deadline = 0.0
        self._prompt_deadline: float | None = None
        self._no_receipt_accepted = False
        self._notice_shown: dict[str, Any] | None = None
        # A notice shown between customers (idle, out of service) is for the person who
        # just left; it goes after this moment so the next stranger never meets it.
        self._notice_until: float | None = None
        self._last_payment: dict[str, Any] | None = None
        self._oos_reasons: dict[str, str] = {}  # code -> technician detail
        self._acceptor_status = AcceptorStatus.INITIALIZING
        self._acceptor_detail = ""
        self._printer_status = PrinterStatus.OFFLINE
        self._printer_checked = -1e9
        self._acceptor_enabled: frozenset[int] | None = None
        self._started_at = 0.0
        self._reconciled = False
        self._acceptor_test: list[SeenBill] | None = None  # bills seen in test mode
        self._disk = DiskLevel.OK
        self._stopping = False
        self._over_max_returning = False  # the next "returned" is the over-maximum bill
        self._ledger_probed = 0.0
        self._ledger_file_checked = -1e9
        self._disk_checked = -1e9
        self._restart_requested = False
        # Offers after a committed payment and the funnel's counts (kiosk/engine/offers.py)
        self._engagement = Engagement(config.terminal.tags, config.paths.data_dir)
        self._offer_pick: OfferPick | None = None

    # -- read-only views: other modules change state only through the engine's methods --
    @property
    def config(self) -> Config:
        return self._config

    @property
    def support_phone(self) -> str:
        return self._support_phone

    @property
    def help_texts(self) -> dict[str, dict[str, str]]:
        return self._help_texts

    @property
    def help_center(self) -> HelpCenter:
        return self._help_center

    @property
    def help_code(self) -> str | None:
        return self._help_code

    @property
    def config_version(self) -> int | None:
        return self._config_version

    @property
    def restart_requested(self) -> bool:
        return self._restart_requested

    @property
    def screen(self) -> Screen:
        return self._screen

    @property
    def session(self) -> CashSession | None:
        return self._session

    @property
    def oos_reasons(self) -> Mapping[str, str]:
        """Out-of-service reasons (code -> technician detail), a read-only live view."""
        return MappingProxyType(self._oos_reasons)

    @property
    def acceptor_status(self) -> AcceptorStatus:
        return self._acceptor_status

    @property
    def acceptor_detail(self) -> str:
        return self._acceptor_detail

    @property
    def printer_status(self) -> PrinterStatus:
        return self._printer_status

    @property
    def last_payment(self) -> dict[str, Any] | None:
        """The payment of the latest session (a copy), with its receipt state."""
        lp = self._last_payment
        return None if lp is None else dict(lp)

    @property
    def reconciled(self) -> bool:
        return self._reconciled

    @property
    def disk(self) -> DiskLevel:
        return self._disk

    @property
    def acceptor_test(self) -> tuple[SeenBill, ...] | None:
        """The bills seen in the technician's acceptor test, or None when it is off."""
        with self._lock:
            return None if self._acceptor_test is None else tuple(self._acceptor_test)

    # -- screens -----------------------------------------------------------------------
    def _set_screen(self, screen: Screen) -> None:
        if screen is not self._screen:
            # A notice belongs to the screen that made it (a rejected bill never shows on
            # "payment accepted"; the last customer's words never greet the next one).
            self._clear_notice()
            self._engagement.on_screen(screen.value)  # the funnel (counts only)
            if not screen.is_customer:
                self._offer_pick = None
                self._engagement.save()  # between customers: never on a receipt's path
        self._screen = screen
        self._prompt_deadline = None
        self._deadline = self._clock() + screen_timeout(screen, self._config.timeouts)
        self._apply_acceptor()
        self._publish()

    def _go_idle(self) -> None:
        self._session = None
        self._help_code = None  # the next customer is another help session
        self._no_receipt_accepted = False
        self._set_screen(Screen.OUT_OF_SERVICE if self._oos_reasons else Screen.IDLE)

    def _abandon(self) -> None:
        s = self._session
        if s is not None and s.session_id is not None:
            try:
                self.ledger.abandon_session(s.session_id)
            except LedgerError as exc:
                self._ledger_failed(exc)
                return
        self._go_idle()

    # -- helpers -----------------------------------------------------------------------
    def _touch(self) -> None:
        """Customer activity: restart the screen timer (cash screen: the after-bill one)."""
        if self._screen.is_customer:
            self._prompt_deadline = None
            t = self._config.timeouts
            s = self._session
            if self._screen is Screen.CASH and s is not None and s.inserted_minor > 0:
                self._deadline = self._clock() + t.cash_after_bill
            else:
                self._deadline = self._clock() + screen_timeout(self._screen, t)

    def _notice(self, code: str, **values: Any) -> None:
        self._notice_shown = message(code, **values)
        if self._session is not None:
            self._session.notices = (*self._session.notices, code)[-RECENT_NOTICES:]
        self._notice_until = (
            None
            if self._screen.is_customer
            else self._clock() + self._config.timeouts.receipt
        )

    def _clear_notice(self) -> None:
        self._notice_shown = None
        self._notice_until = None

    def _expire_notice(self, now: float) -> None:
        """Tick: a notice shown between customers lasts as long as a receipt screen."""
        if self._notice_until is not None and now >= self._notice_until:
            self._clear_notice()
            self._publish()

    def _acceptable_notes(self, s: CashSession) -> frozenset[int]:
        """Denominations the session may take now: the acceptor's live bill table in the
        provider's currency, each still fitting under the maximum (the escrow rule, M3)."""
        room = s.provider.max_minor - s.inserted_minor
        return frozenset(
            b.amount_minor
            for b in self.acceptor.info.bill_table
            if b.amount_minor <= room and b.currency == s.provider.currency
        )

    def _note_device_error(self, device: str, code: str, detail: str) -> None:
        self._device_errors[device] = DeviceError(device, code, detail, self.ledger.now_ms())

    def _add_event(self, kind: str, severity: str, data: dict[str, Any]) -> None:
        group = group_of(kind)
        if group is not None and group in DEVICES and severity in PROBLEM_SEVERITIES:
            self._note_device_error(group.value, kind, error_detail(data))
        if "ledger" in self._oos_reasons:
            log.error("event not recorded (ledger down): %s %s", kind, data)
            return
        try:
            self.ledger.add_event(kind, severity, data)
        except LedgerError as exc:
            self._ledger_failed(exc)

    def _publish(self) -> None:
        self._seq += 1
        snap = self.snapshot()
        for callback in list(self._subscribers):
            try:
                callback(snap)
            except Exception:
                log.exception("snapshot subscriber failed")

    # -- implemented by the concerns (declared for the type checker) --------------------
    def snapshot(self) -> dict[str, Any]:  # kiosk.engine.payment_engine
        raise NotImplementedError

    def _apply_acceptor(self) -> None:  # kiosk.engine.cash (M4)
        raise NotImplementedError

    def _request_finish(self, note: str | None) -> None:  # kiosk.engine.cash (M5)
        raise NotImplementedError

    def _ledger_failed(self, exc: Exception) -> None:  # kiosk.engine.service_state (M10)
        raise NotImplementedError

    def _probe_ledger(self) -> None:  # kiosk.engine.service_state (M10)
        raise NotImplementedError

    def _set_oos(self, code: str, detail: str) -> None:  # kiosk.engine.service_state
        raise NotImplementedError

    def _clear_oos(self, code: str) -> None:  # kiosk.engine.service_state
        raise NotImplementedError

    def _print_payment(self, payment_id: str, copy: bool,  # kiosk.engine.printing
                       offer: Offer | None = None) -> None:
        raise NotImplementedError

    def _poll_printer_soon(self) -> None:  # kiosk.engine.printing
        raise NotImplementedError

    def _offer_interested(self, args: dict[str, Any]) -> None:  # kiosk.engine.offers
        raise NotImplementedError

    def _pick_offers(self, s: CashSession, inserted_minor: int) -> OfferPick | None:
        raise NotImplementedError  # kiosk.engine.offers

    def _offers_shown(self, pick: OfferPick | None) -> None:
        raise NotImplementedError  # kiosk.engine.offers
