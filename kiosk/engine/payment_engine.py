"""The payment engine: one customer session at a time, money rules first.

It listens to the bill acceptor (drivers.acceptor.AcceptorListener), keeps the session
state machine (kiosk.screens), writes every money fact through the ledger, and publishes a
snapshot after every change. Devices are reached only through the two small interfaces in
drivers/. All state is guarded by one lock that only the engine's own modules take; device
callbacks arrive on driver threads, intents on the local-API thread, `tick()` on the main
loop. Other modules (kiosk.service, the local API, sync/) use the public methods below and
read the frozen `status()` view; none of them takes the lock or touches engine state.

The concerns live in sibling modules (see kiosk.engine.core for why they are mixins):
cash (M1-M6), session (intents and timeouts), service_state (M10, disk), printing (M5),
snapshot (the outside views). Invariants: docs/invariants.md; their tests:
tests/core/test_engine_money.py.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from drivers.acceptor import AcceptorStatus
from kiosk.catalog import Catalog
from kiosk.engine.cash import CashCollection
from kiosk.engine.core import IntentError, SeenBill
from kiosk.engine.offers import OffersAndFunnel
from kiosk.engine.printing import PRINTER_POLL_S, Printing
from kiosk.engine.service_state import ServiceState
from kiosk.engine.session import SessionIntents
from kiosk.engine.snapshot import BETWEEN_CUSTOMERS, EngineStatus, build_snapshot, build_status
from kiosk.help_center import HelpCenter
from kiosk.ledger import LedgerIdentityError
from kiosk.offers import OfferRules
from kiosk.screens import Screen
from kiosk.technician import Channel, TechnicianAuthError

T = TypeVar("T")

# Start-up reconciliation waits for these: a device still moving a bill (ACCEPTING) may be
# about to report it stacked, and that bill belongs to the session still open in the ledger.
SETTLE_STATUSES = frozenset(
    {AcceptorStatus.DISABLED, AcceptorStatus.IDLE}
    | {s for s in AcceptorStatus if s.is_fault and s is not AcceptorStatus.OFFLINE}
)
STARTUP_SETTLE_S = 10.0
HELP_CODE_DIGITS = 4  # short enough to read out on the phone; the terminal id is in front
HELP_CODE_SPACE = 10**HELP_CODE_DIGITS


class PaymentEngine(SessionIntents, CashCollection, ServiceState, Printing, OffersAndFunnel):
    """The engine other modules see: one per core process, built by the daemon."""

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._started_at = self._clock()
        self.printer.start()
        self.check_printer_now()
        self.acceptor.start(self)
        self.tick()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True  # the driver's last "offline: stopped" is not a fault
        self.acceptor.stop()
        self.printer_worker.shutdown()
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
            if not self._reconciled and self.ledger.blocked is not None:
                # A ledger that is not this terminal's (missing, replaced): out of service
                # at once, nothing reconciled; a technician decides (docs/ledger.md).
                self._reconciled = True
                self._oos_reasons.pop("starting", None)
                self._ledger_failed(LedgerIdentityError(self.ledger.blocked))
                return
            if not self._reconciled:
                settled = self._acceptor_status in SETTLE_STATUSES
                if settled or now - self._started_at >= STARTUP_SETTLE_S:
                    self._reconcile()
                return
            self._run_probes(now)
            self._funnel_tick()  # a finished day's funnel counts, once, to the desk
            self._expire_notice(now)
            # The bill table may arrive after the cash screen opened (a driver still in its
            # start-up sequence): re-derive the wanted mask; nothing is sent if unchanged.
            self._apply_acceptor()
            s = self._session
            if s is not None and s.finishing and s.payment_id is None:
                if self._pending is None or now >= s.finish_deadline:
                    self._finish()
                return
            if self._screen.is_customer and now >= self._deadline:
                self._on_deadline(now)
        if now - self._printer_checked >= PRINTER_POLL_S and self._screen in (
            Screen.IDLE,
            Screen.OUT_OF_SERVICE,
        ):
            self._printer_checked = now
            self.printer_worker.submit(self._poll_printer)

    # -- the outside views -------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What the customer's screen shows (pushed to the UI after every change)."""
        with self._lock:
            return build_snapshot(self, self._clock())

    def status(self) -> EngineStatus:
        """The service state, frozen: for the technician's status, the desk and the agent."""
        with self._lock:
            return build_status(self)

    # -- for technician and desk operations (kiosk/service.py, the local API, sync/) ----
    def run_exclusive(self, operation: Callable[[], T], *, between_customers: bool = True) -> T:
        """Run a technician or desk operation atomically with customers and devices.

        With `between_customers` it is refused (IntentError "busy") while a customer
        session is in progress, so a technician never empties the cassette under a
        customer who is paying. The operation may call the engine's public methods.
        """
        with self._lock:
            if between_customers:
                self._require_between_customers()
            return operation()

    def _require_between_customers(self) -> None:
        if self._screen not in BETWEEN_CUSTOMERS:
            raise IntentError("busy", "a customer session is in progress; try again when idle")

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
            self._support_phone = phone
            self._publish()

    def apply_desk_config(
        self,
        *,
        version: int,
        catalog: Catalog | None = None,
        support_phone: str | None = None,
        pin_hash: str | None = None,
        help_texts: dict[str, dict[str, str]] | None = None,
        offers: OfferRules | None = None,
        help_center: HelpCenter | None = None,
        publish: bool = True,
    ) -> None:
        """A validated desk configuration, every part at once (None: leave that part)."""
        with self._lock:
            if catalog is not None:
                self._config = dataclasses.replace(self._config, catalog=catalog)
            if support_phone is not None:
                self._support_phone = support_phone
            if pin_hash is not None:
                self.technician.set_pin_hash(pin_hash)
            if help_texts is not None:
                self._help_texts = help_texts  # shown by the UI's help screen
            if offers is not None:
                self._engagement.set_rules(offers, version)  # kiosk/engine/offers.py
            if help_center is not None:
                self._help_center = help_center
            self._config_version = version
            if publish:
                self._publish()

    def open_help(self) -> str:
        """The customer opened help: the help code of this session (made once per
        session; kept until it ends so the operator can follow it). No I/O."""
        with self._lock:
            if self._help_code is None:
                number = secrets.randbelow(HELP_CODE_SPACE)
                self._help_code = f"{self.config.terminal.id}-{number:0{HELP_CODE_DIGITS}d}"
                self._publish()
            return self._help_code

    def close_help(self) -> None:
        """Help closed on the idle screen: that visit is over (a customer session keeps
        its code until it ends)."""
        with self._lock:
            if self._help_code is not None and self._screen in BETWEEN_CUSTOMERS:
                self._help_code = None
                self._publish()

    def set_acceptor_test(self, on: bool) -> tuple[SeenBill, ...]:
        """The technician's acceptor test: every bill is read and returned, never credited;
        the terminal is out of service for customers meanwhile. Returns the bills seen."""
        with self._lock:
            if on:
                self._require_between_customers()
                self.set_out_of_service("service", "technician acceptor test")
                self._acceptor_test = []
            else:
                self._acceptor_test = None
                self.clear_out_of_service("service")
            self._apply_acceptor()  # the test mask, or none (M4)
            self._add_event("acceptor_test", "info", {"on": on})
            self._publish()
            return tuple(self._acceptor_test or ())

    def request_restart(self) -> bool:
        """Ask the daemon to restart the core (systemd starts it again). Only between
        customers: False (and nothing asked) while a customer session is in progress."""
        with self._lock:
            if self._screen not in BETWEEN_CUSTOMERS:
                return False
            self._restart_requested = True
            return True

    # -- the desk link (the sync agent, sync/agent.py) ---------------------------------
    def note_sync_connected(self) -> None:
        """The MQTT session to the broker is up (for the technician's status page)."""
        with self._lock:
            self._sync_state = dataclasses.replace(
                self._sync_state, connected=True, since_ms=self.ledger.now_ms()
            )

    def note_sync_disconnected(self, reason: str) -> None:
        """The MQTT session was lost: since when and why (also the link's last error)."""
        with self._lock:
            now = self.ledger.now_ms()
            self._sync_state = dataclasses.replace(
                self._sync_state, connected=False, since_ms=now, last_error=reason[:200],
                last_error_ms=now,
            )
            self._note_device_error("mqtt", "mqtt_disconnected", reason[:200])

    def note_sync_link(self, link: Mapping[str, Any]) -> None:
        """The broker link's details for the technician: which node, which MQTT level,
        since when, why it is down (a plain mapping: kiosk/ never imports sync/)."""
        with self._lock:
            self._sync_state = dataclasses.replace(self._sync_state, link=dict(link))

    def note_sync_desk_heard(self) -> None:
        """A desk worker that stores this terminal's records beat (sync/desk_beat.py)."""
        with self._lock:
            self._sync_state = dataclasses.replace(
                self._sync_state, desk_heard_ms=self.ledger.now_ms()
            )

    def note_sync_delivered(self) -> None:
        """The desk acknowledged messages from the outbox: the last delivery."""
        with self._lock:
            self._sync_state = dataclasses.replace(
                self._sync_state, last_delivery_ms=self.ledger.now_ms()
            )

    # -- technician access (the local API) ---------------------------------------------
    def technician_login(self, pin: str, channel: Channel = Channel.SHELL) -> str:
        """Check the PIN (lockout included, one for every channel); both outcomes are
        events for the desk."""
        with self._lock:
            try:
                token = self.technician.login(pin, channel)
            except TechnicianAuthError as exc:
                self._add_event(
                    "technician_login_failed", "warning",
                    {"code": exc.code, "channel": channel.value},
                )
                raise
            self._add_event("technician_login", "info", {"channel": channel.value})
            return token

    def technician_logout(self, token: object) -> None:
        """End the session this token opened (other channels keep theirs)."""
        with self._lock:
            self.technician.logout(token)

    def technician_check(self, token: object, op: object, *, record: bool = True) -> None:
        """Raise TechnicianAuthError unless the token is a live session's. An op that
        changes something is recorded (`record`); looking at a page is not, so the
        technician's own page views never crowd the device events out of the list."""
        with self._lock:
            channel = self.technician.check(token)
            if record:
                self._add_event(
                    "technician_action", "info", {"op": op, "channel": channel.value}
                )
