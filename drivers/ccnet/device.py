"""`CcnetAcceptor`: the CCNET bill validator as a `drivers.acceptor.BillAcceptor`.

One line thread owns the port (half-duplex, one outstanding request): it runs the
start-up sequence of §1.8, polls, turns POLL states into listener calls and executes the
engine's requests between polls. The engine's calls only record intent and wake the
thread, so they never block and never put a second frame on the line.

Money rules (DESIGN.md M1-M4, bill-acceptors.md §5):
- credit only on 0x81, ACKed only after `on_stacked` returned; if it raises, no ACK, and
  the repeat is offered again with the same event key (`eventkeys`);
- escrow is a question to the engine; an unknown bill, a listener error or a hold that
  never ends returns the bill;
- the unit is left disabled after start-up and whenever the engine wants no bills; the
  enable mask is re-applied after any reset or reconnect;
- power-up with a bill in the stacker (0x12) → the 0x81 that follows is `recovered`;
  a 0x81 this driver never asked for (seen right after a driver restart) is flagged too,
  so the engine reconciles it against its persisted escrow marker.
"""

from __future__ import annotations

import collections
import enum
import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from drivers.acceptor import (
    AcceptorError,
    AcceptorListener,
    AcceptorStatus,
    Bill,
    DeviceInfo,
    EscrowDecision,
    StackedBill,
)
from drivers.ccnet.billtable import bills_of, encode_mask, load_bills, save_bills
from drivers.ccnet.eventkeys import StackedEdge
from drivers.ccnet.link import CcnetLink, LinkError, NoReply, PortError, SerialPort
from drivers.ccnet.protocol import BUSY_UNIT_S, MASK_LEN, Address, Command, Control
from drivers.ccnet.replies import BillTable, ControlReply, Identification, PollReply, Reply
from drivers.ccnet.states import (
    IDENT_STATES,
    INITIALIZING_STATES,
    POWER_UP_STATES,
    SETTLED_STATES,
    TRANSIENT_STATES,
    PollState,
    abstract_status,
    describe,
    reject_reason_text,
)
from drivers.ccnet.timing import CcnetTiming
from drivers.framelog import FrameLog
from drivers.profiles import Profile, ProfileError, SerialSettings
from drivers.transport import open_port

log = logging.getLogger(__name__)

PROTOCOL = "ccnet"
READ_TIMEOUT_S = 0.01
"""Port read granularity: how late the link notices its deadline, at most."""
STOP_JOIN_S = 10.0
UNIDENTIFIED = "unidentified"

PortOpener = Callable[[str, SerialSettings], SerialPort]

_DECISION_COMMANDS = {
    EscrowDecision.STACK: Command.STACK,
    EscrowDecision.RETURN: Command.RETURN,
    EscrowDecision.HOLD: Command.HOLD,
}
_IN_BILL_PATH = TRANSIENT_STATES | {PollState.ESCROW, PollState.HOLDING}
_QUIET_DETAIL = frozenset({AcceptorStatus.ACCEPTING, AcceptorStatus.INITIALIZING})
"""Statuses whose detail changes with every sub-state; only the status change is reported."""


def default_opener(url: str, settings: SerialSettings) -> SerialPort:
    return open_port(url, settings, timeout_s=READ_TIMEOUT_S)


class _Stop(Exception):
    """Raised inside the line thread to unwind when stop() was called."""


class _Phase(enum.Enum):
    STARTING = "starting"
    INITIALIZING = "initializing"
    RUNNING = "running"


@dataclass
class _Escrow:
    """The bill currently in escrow and what has been decided about it."""

    bill_type: int | None
    bill: Bill | None
    since: float
    decision: EscrowDecision | None = None


class CcnetAcceptor:
    """CashCode CCNET bill validator on one serial port.

    `port` is a device path, a pty path or a pyserial URL; `profile` supplies serial
    settings and [timing]. With `auto_profiles`, `profile` is only the starting point:
    after IDENTIFICATION the first of them whose patterns match the part number takes
    over (its timing; the line settings that already work are kept).

    Raw frames go to `frame_log` (caller-owned) or to a log the driver opens at
    `frame_log_path` and closes on stop.

    `known_bills` / `bill_table_cache` name the bills before the unit has answered GET
    BILL TABLE. That matters only after a crash between a credit and its ACK: the unit
    then reports the stacked bill first and refuses GET BILL TABLE until it is ACKed.
    The cache file is rewritten whenever the unit's table is read.
    `currency` (ISO 4217), if given, restricts `enable` to that currency.
    """

    def __init__(
        self,
        port: str,
        profile: Profile,
        *,
        frame_log: FrameLog | None = None,
        frame_log_path: Path | None = None,
        timing: CcnetTiming | None = None,
        auto_profiles: Iterable[Profile] = (),
        known_bills: Iterable[Bill] = (),
        bill_table_cache: Path | None = None,
        currency: str | None = None,
        opener: PortOpener = default_opener,
    ) -> None:
        check_ccnet_profile(profile)
        self._port_url = port
        self._profile = profile
        self._timing = timing or CcnetTiming.from_profile(profile)
        # every candidate is validated now: a bad profile is a start-up error, not a surprise
        self._auto = [(p, CcnetTiming.from_profile(check_ccnet_profile(p)))
                      for p in auto_profiles]
        self._owns_frame_log = frame_log is None and frame_log_path is not None
        self._frame_log = frame_log or FrameLog(f"{PROTOCOL}.{port}", frame_log_path)
        self._bill_cache = bill_table_cache
        self._opener = opener
        self._address = profile_address(profile)
        self._currency = currency
        self._run_id = secrets.token_hex(4)

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._listener: AcceptorListener | None = None

        # shared with engine threads (under _lock)
        self._status = AcceptorStatus.OFFLINE
        self._detail = "not started"
        self._info = DeviceInfo(protocol=PROTOCOL, profile=profile.name)
        self._wanted_amounts: frozenset[int] = frozenset()
        self._engine_actions: collections.deque[EscrowDecision] = collections.deque()

        # owned by the line thread
        self._port: SerialPort | None = None
        self._link: CcnetLink | None = None
        known = tuple(known_bills) or (load_bills(bill_table_cache) if bill_table_cache else ())
        self._bills: dict[int, Bill] = {b.bill_type: b for b in known}
        self._ident: Identification | None = None
        self._need_ident = True  # (re)read after every RESET: the unit may have been swapped
        self._need_table = True
        self._ident_tried_in: int | None = None  # state of the last attempt (one per state)
        self._applied_mask: int | None = None
        self._phase = _Phase.STARTING
        self._resumable = False  # True once this run has initialised the device
        self._reset_needed = False
        self._last_poll: tuple[int, int | None] | None = None
        self._state_code: int | None = None
        self._state_since = 0.0
        self._stuck_reported = False
        self._escrow: _Escrow | None = None
        self._stack_sent = False
        self._recovery_pending = False
        self._table_retry_key: str | None = None
        self._edge = StackedEdge(self._run_id)

    # -- BillAcceptor --------------------------------------------------------------------

    @property
    def status(self) -> AcceptorStatus:
        with self._lock:
            return self._status

    @property
    def status_detail(self) -> str:
        with self._lock:
            return self._detail

    @property
    def info(self) -> DeviceInfo:
        with self._lock:
            return self._info

    @property
    def run_id(self) -> str:
        return self._run_id

    def start(self, listener: AcceptorListener) -> None:
        if self._thread is not None:
            raise AcceptorError("CCNET acceptor already started")
        self._listener = listener
        self._thread = threading.Thread(
            target=self._run, name=f"ccnet-line:{self._port_url}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Disable the unit (best effort), close the port, end the line thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_S)
            if self._thread.is_alive():
                log.error("CCNET line thread did not stop within %.0f s", STOP_JOIN_S)

    def enable(self, amounts_minor: Collection[int]) -> None:
        with self._lock:
            self._wanted_amounts = frozenset(amounts_minor)
        self._wake.set()

    def disable(self) -> None:
        self.enable(())

    def stack(self) -> None:
        self._queue_action(EscrowDecision.STACK)

    def return_bill(self) -> None:
        self._queue_action(EscrowDecision.RETURN)

    def wait_ready(self, timeout_s: float) -> bool:
        """Block until the start-up sequence finished (tests, CLI); False on timeout."""
        return self._ready.wait(timeout_s)

    def _queue_action(self, action: EscrowDecision) -> None:
        with self._lock:
            self._engine_actions.append(action)
        self._wake.set()

    # -- line thread: connection ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._connect()
                    self._session()
                except _Stop:
                    break
                except PortError as exc:
                    self._lost(f"port error: {exc}")
                except NoReply as exc:
                    self._lost(f"no answer: {exc}")
                except Exception as exc:  # a driver bug must not end the line thread
                    log.exception("CCNET line thread error")
                    self._lost(f"driver error: {exc}")
                try:
                    self._sleep(self._timing.reconnect_s)
                except _Stop:
                    break
        finally:
            self._shutdown()

    def _connect(self) -> None:
        if self._link is not None:
            return
        try:
            port = self._opener(self._port_url, self._profile.serial)
        except OSError as exc:
            raise PortError(str(exc)) from exc
        self._port = port
        self._link = CcnetLink(port, self._timing.link, self._frame_log, self._address)
        log.info("CCNET port %s open", self._port_url)

    def _lost(self, detail: str) -> None:
        """The device stopped answering or the port vanished: close, report, retry later."""
        self._ready.clear()
        self._close_port()
        self._phase = _Phase.STARTING
        self._set_status(AcceptorStatus.OFFLINE, detail)

    def _close_port(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except Exception:  # closing a vanished port may fail in many ways; it is gone
                log.debug("closing %s failed", self._port_url, exc_info=True)
        self._port = None
        self._link = None

    def _shutdown(self) -> None:
        if self._link is not None:
            off = bytes(2 * MASK_LEN)
            try:
                self._link.request(Command.ENABLE_BILL_TYPES, off)  # M4: leave it disabled
            except LinkError:
                pass
        self._close_port()
        self._ready.clear()
        self._set_status(AcceptorStatus.OFFLINE, "stopped")
        if self._owns_frame_log:
            self._frame_log.close()

    # -- line thread: sessions -----------------------------------------------------------

    def _session(self) -> None:
        """Talk to the device until the link fails (exception) or stop() (_Stop)."""
        self._phase = _Phase.STARTING
        reply = self._poll()
        rebooted = reply is not None and reply.z1 in POWER_UP_STATES
        if not self._resumable or rebooted or self._reset_needed:
            self._drain_bill_path()
            self._reset_and_initialize()
        else:
            state = describe(*self._last_poll) if self._last_poll else "unknown"
            log.info("CCNET link back, device %s: resuming without RESET", state)
        self._phase = _Phase.RUNNING
        self._ready.set()
        while True:
            self._check_stop()
            if self._reset_needed:
                self._ready.clear()
                self._reset_and_initialize()
                self._phase = _Phase.RUNNING
                self._ready.set()
            self._run_engine_actions()
            self._identify_if_needed()
            self._sync_enable()
            self._poll()
            self._check_stuck()
            self._sleep(self._next_poll_delay(), wake_early=True)

    def _drain_bill_path(self) -> None:
        """Before a RESET, let a bill in motion finish and a stacked report be credited.

        A moving bill gets at most the stuck-state time. An unacknowledged 0x81 gets as
        long as it takes: a RESET on top of it could lose the event [U], and a listener
        that keeps failing means the ledger is down (M10), where waiting is right.
        """
        deadline = time.monotonic() + self._timing.stuck_state_s
        while self._state_code == PollState.STACKED or (
            self._state_code in _IN_BILL_PATH and time.monotonic() < deadline
        ):
            self._sleep(self._timing.active_poll_s)
            self._poll()

    def _reset_and_initialize(self) -> None:
        """§1.8: RESET, wait through power-up/initialize/busy, identify, stay disabled."""
        self._phase = _Phase.INITIALIZING
        self._reset_needed = False
        self._set_status(AcceptorStatus.INITIALIZING, "reset")
        reply = self._link_request(Command.RESET)
        if not _is_ack(reply):
            log.warning("RESET answered with %r", reply)
        self._applied_mask = None
        self._escrow = None
        self._need_ident = self._need_table = True
        self._ident_tried_in = None
        self._sleep(self._timing.reset_wait_s)
        deadline = time.monotonic() + self._timing.init_timeout_s
        while True:
            try:
                poll = self._poll()
            except NoReply:
                poll = None  # some units are silent while they reset
                if time.monotonic() > deadline:
                    raise
            if poll is not None and poll.z1 not in INITIALIZING_STATES | {PollState.STACKED}:
                break
            if time.monotonic() > deadline:
                last = describe(*self._last_poll) if self._last_poll else "no answer"
                self._set_status(
                    AcceptorStatus.FAILURE,
                    f"initialization not finished after {self._timing.init_timeout_s:g} s"
                    f" ({last})",
                )
                return
            delay = self._timing.reset_poll_s
            if poll is not None and poll.z1 == PollState.BUSY and poll.z2:
                delay = poll.z2 * BUSY_UNIT_S  # YH × 100 ms before the next poll
            self._sleep(delay)
        self._resumable = True
        self._identify_if_needed()
        self._send_enable(0)  # M4: disabled until the engine asks; _sync_enable restores it

    def _identify_if_needed(self) -> None:
        """IDENTIFICATION and GET BILL TABLE, once per state in which the unit allows them
        (a unit that keeps refusing is not asked on every poll)."""
        if not (self._need_ident or self._need_table):
            return
        if self._state_code not in IDENT_STATES or self._ident_tried_in == self._state_code:
            return
        self._ident_tried_in = self._state_code
        if self._need_ident:
            reply = self._link_request(Command.IDENTIFICATION, self._timing.link.ident_timeout_s)
            if isinstance(reply, Identification):
                self._on_identification(reply)
            else:
                log.warning("IDENTIFICATION answered with %r", reply)
        if self._need_table:
            self._read_bill_table()

    def _on_identification(self, ident: Identification) -> None:
        if self._ident is not None and self._ident.serial_number != ident.serial_number:
            log.warning("CCNET unit replaced: serial %s, was %s", ident.serial_number,
                        self._ident.serial_number)
        self._ident = ident
        self._need_ident = False
        self._adopt_profile(ident.part_number)
        self._update_info()

    def _adopt_profile(self, part_number: str) -> None:
        match = next(((p, t) for p, t in self._auto if p.matches(part_number)), None)
        if match is None:
            if not self._profile.matches(part_number):
                log.warning("part number %r does not match profile %s", part_number,
                            self._profile.name)
            return
        profile, timing = match
        if profile is self._profile:
            return
        if profile.serial != self._profile.serial:
            log.warning("profile %s wants %s; keeping the working line settings %s",
                        profile.name, profile.serial, self._profile.serial)
        log.info("CCNET part number %s: using profile %s", part_number, profile.name)
        self._profile = profile
        self._timing = timing
        if self._port is not None:
            self._link = CcnetLink(self._port, timing.link, self._frame_log, self._address)

    def _read_bill_table(self) -> None:
        reply = self._link_request(Command.GET_BILL_TABLE, self._timing.link.ident_timeout_s)
        if isinstance(reply, BillTable):
            bills = {b.bill_type: b for b in bills_of(reply.records)}
            if self._bills and self._bills != bills:
                log.warning("device bill table differs from the known one; using the device's")
            changed = bills != self._bills
            self._bills = bills
            self._need_table = False
            self._update_info()
            if changed and self._bill_cache is not None:
                try:
                    save_bills(self._bill_cache, bills.values())
                except OSError as exc:
                    log.warning("cannot write bill-table cache %s: %s", self._bill_cache, exc)
        else:
            log.warning("GET BILL TABLE answered with %r", reply)

    def _update_info(self) -> None:
        ident = self._ident
        info = DeviceInfo(
            protocol=PROTOCOL,
            model=ident.part_number if ident else "",
            serial_number=ident.serial_number if ident else "",
            firmware=ident.firmware if ident else "",
            profile=self._profile.name,
            bill_table=tuple(self._bills[t] for t in sorted(self._bills)),
        )
        with self._lock:
            self._info = info

    # -- line thread: enable mask --------------------------------------------------------

    def _wanted_mask(self) -> int:
        with self._lock:
            amounts = self._wanted_amounts
        types = [
            t
            for t, bill in self._bills.items()
            if bill.amount_minor in amounts
            and (self._currency is None or bill.currency == self._currency)
        ]
        return int.from_bytes(encode_mask(types), "big")

    def _sync_enable(self) -> None:
        """Bring the unit's enable mask to what the engine wants (only when no bill moves)."""
        if self._state_code not in SETTLED_STATES:
            return
        want = self._wanted_mask()
        device_enabled = self._state_code == PollState.IDLING
        if want == self._applied_mask and bool(want) == device_enabled:
            return
        self._send_enable(want)

    def _send_enable(self, mask: int) -> None:
        raw = mask.to_bytes(MASK_LEN, "big")
        reply = self._link_request(Command.ENABLE_BILL_TYPES, data=raw + raw)  # escrow = enable
        if _is_ack(reply):
            self._applied_mask = mask
        else:
            log.warning("ENABLE BILL TYPES %s answered with %r", raw.hex(), reply)

    # -- line thread: polling ------------------------------------------------------------

    def _poll(self) -> PollReply | None:
        link = self._require_link()
        exchange = link.exchange(Command.POLL)
        reply = exchange.reply
        if not isinstance(reply, PollReply):
            exchange.ack()
            log.warning("unexpected POLL reply %r", reply)
            return None
        self._note_state(reply)
        if reply.z1 == PollState.STACKED:
            if self._on_stacked(reply.z2):
                exchange.ack()
        else:
            exchange.ack()  # nothing in this reply needs the ledger first
            self._edge.observe(reply.z1)
            self._on_state(reply)
        return reply

    def _note_state(self, reply: PollReply) -> None:
        if reply.z1 != self._state_code:
            self._state_code = reply.z1
            self._state_since = time.monotonic()
            self._stuck_reported = False

    def _on_state(self, reply: PollReply) -> None:
        z1, z2 = reply.z1, reply.z2
        new_event = self._last_poll != (z1, z2)
        self._last_poll = (z1, z2)
        if not self._stuck_reported:
            self._set_status(abstract_status(z1), describe(z1, z2))
        if z1 not in (PollState.ESCROW, PollState.HOLDING):
            self._escrow = None
        if z1 in POWER_UP_STATES:
            if z1 == PollState.POWER_UP_BILL_IN_STACKER:
                self._recovery_pending = True
            if self._phase is _Phase.RUNNING:
                log.warning("CCNET unit powered up while running (%s); resetting", describe(z1))
                self._reset_needed = True
        elif z1 == PollState.ESCROW:
            self._on_escrow(z2)
        elif z1 == PollState.HOLDING:
            self._on_holding()
        elif z1 == PollState.RETURNED and new_event:
            bill = self._bill_for(z2)
            if bill is not None:
                self._notify("on_returned", lambda lst: lst.on_returned(bill))
        elif z1 == PollState.REJECTING and new_event:
            reason = reject_reason_text(z2)
            self._notify("on_rejected", lambda lst: lst.on_rejected(reason))
        elif z1 == PollState.PAUSE and self._phase is not _Phase.INITIALIZING:
            self._reset_needed = True  # spec: RESET resolves the Pause deadlock
        if z1 in SETTLED_STATES:
            if self._recovery_pending:
                log.warning("power-up with bill in stacker was not followed by a stacked report")
                self._recovery_pending = False
            self._stack_sent = False

    def _on_stacked(self, bill_type: int | None) -> bool:
        """Offer the credit; True when the reply may be ACKed (the listener committed it)."""
        self._last_poll = (PollState.STACKED, bill_type)
        serial = self._ident.serial_number if self._ident else UNIDENTIFIED
        event = self._edge.stacked(
            bill_type, serial, recovered=self._recovery_pending or not self._stack_sent
        )
        bill = self._bill_for(bill_type)
        if bill is None and self._table_retry_key != event.key:
            self._table_retry_key = event.key  # the unit may refuse; try once per event
            self._read_bill_table()
            bill = self._bill_for(bill_type)
        if bill is None:
            self._set_status(
                AcceptorStatus.FAILURE,
                f"bill stacked with type {bill_type} not in the bill table; not acknowledged",
            )
            return False
        if not self._stuck_reported:
            self._set_status(AcceptorStatus.ACCEPTING, describe(PollState.STACKED, bill_type))
        listener = self._require_listener()
        try:
            listener.on_stacked(StackedBill(bill, event.key, event.recovered))
        except Exception:
            log.exception("on_stacked failed for %s; not acknowledging, device will repeat",
                          event.key)
            return False
        self._stack_sent = False
        self._recovery_pending = False
        self._escrow = None
        return True

    def _bill_for(self, bill_type: int | None) -> Bill | None:
        return self._bills.get(bill_type) if bill_type is not None else None

    # -- line thread: escrow -------------------------------------------------------------

    def _on_escrow(self, bill_type: int | None) -> None:
        esc = self._escrow
        if esc is None or esc.bill_type != bill_type:
            esc = self._escrow = _Escrow(bill_type, self._bill_for(bill_type), time.monotonic())
        if esc.decision in (EscrowDecision.STACK, EscrowDecision.RETURN):
            self._send_decision(esc.decision)  # our command was lost: repeat it, do not re-ask
        else:
            self._decide(esc)

    def _on_holding(self) -> None:
        esc = self._escrow
        if esc is None:
            # Holding a bill we never saw in escrow (driver restarted): we cannot credit
            # what we cannot name, so give it back.
            esc = self._escrow = _Escrow(None, None, time.monotonic(), EscrowDecision.HOLD)
        if esc.decision in (EscrowDecision.STACK, EscrowDecision.RETURN):
            self._send_decision(esc.decision)
        else:
            self._decide(esc)

    def _decide(self, esc: _Escrow) -> None:
        decision: EscrowDecision | None = None
        if esc.decision is EscrowDecision.HOLD:
            decision = self._take_engine_action()
        if decision is None:
            if esc.bill is None:
                log.warning("bill type %s in escrow is not in the bill table; returning",
                            esc.bill_type)
                decision = EscrowDecision.RETURN
            elif (
                esc.decision is EscrowDecision.HOLD
                and time.monotonic() - esc.since > self._timing.escrow_hold_max_s
            ):
                log.warning("bill held longer than %.0f s; returning",
                            self._timing.escrow_hold_max_s)
                decision = EscrowDecision.RETURN
            else:
                decision = self._ask_escrow(esc.bill)
        esc.decision = decision
        self._send_decision(decision)

    def _ask_escrow(self, bill: Bill) -> EscrowDecision:
        listener = self._require_listener()
        try:
            decision = listener.on_escrow(bill)
        except Exception:
            log.exception("on_escrow failed; returning the bill")
            return EscrowDecision.RETURN
        if not isinstance(decision, EscrowDecision):
            log.error("on_escrow returned %r; returning the bill", decision)
            return EscrowDecision.RETURN
        return decision

    def _take_engine_action(self) -> EscrowDecision | None:
        with self._lock:
            return self._engine_actions.popleft() if self._engine_actions else None

    def _run_engine_actions(self) -> None:
        """stack()/return_bill() act on a held bill; without one they are stale."""
        esc = self._escrow
        if esc is not None and esc.decision is EscrowDecision.HOLD:
            action = self._take_engine_action()
            if action is not None:
                esc.decision = action
                self._send_decision(action)
            return
        with self._lock:
            stale = list(self._engine_actions)
            self._engine_actions.clear()
        for action in stale:
            log.warning("%s requested but no bill is held in escrow; ignored", action.value)

    def _send_decision(self, decision: EscrowDecision) -> None:
        if decision is EscrowDecision.STACK:
            self._stack_sent = True  # before sending: the ACK may be lost after it stacked
        reply = self._link_request(_DECISION_COMMANDS[decision])
        if not _is_ack(reply):
            log.warning("%s answered with %r", decision.value, reply)

    # -- line thread: timers, status, helpers --------------------------------------------

    def _check_stuck(self) -> None:
        if self._state_code not in TRANSIENT_STATES or self._stuck_reported:
            return
        elapsed = time.monotonic() - self._state_since
        if elapsed > self._timing.stuck_state_s:
            self._stuck_reported = True
            self._set_status(
                AcceptorStatus.JAMMED,
                f"stuck in {describe(*self._last_poll) if self._last_poll else '?'}"
                f" for {elapsed:.0f} s",
            )

    def _next_poll_delay(self) -> float:
        if self._state_code == PollState.BUSY and self._last_poll and self._last_poll[1]:
            return self._last_poll[1] * BUSY_UNIT_S
        moving = self._state_code in _IN_BILL_PATH or self._state_code in (
            PollState.STACKED,
            PollState.RETURNED,
        )
        return self._timing.active_poll_s if moving else self._timing.poll_s

    def _set_status(self, status: AcceptorStatus, detail: str) -> None:
        with self._lock:
            changed = status != self._status or (
                detail != self._detail and status not in _QUIET_DETAIL
            )
            self._status = status
            self._detail = detail
        if changed and self._listener is not None:
            log.info("CCNET status %s: %s", status.value, detail)
            self._notify("on_status", lambda lst: lst.on_status(status, detail))

    def _notify(self, what: str, call: Callable[[AcceptorListener], object]) -> None:
        """Listener exceptions are logged, never allowed to end the line thread."""
        try:
            call(self._require_listener())
        except Exception:
            log.exception("listener %s failed", what)

    def _require_listener(self) -> AcceptorListener:
        if self._listener is None:
            raise AcceptorError("CCNET acceptor used before start()")
        return self._listener

    def _require_link(self) -> CcnetLink:
        if self._link is None:
            raise PortError("port not open")
        return self._link

    def _link_request(
        self, command: Command, timeout_s: float | None = None, data: bytes = b""
    ) -> Reply:
        self._check_stop()
        return self._require_link().request(command, data, timeout_s)

    def _check_stop(self) -> None:
        if self._stopping.is_set():
            raise _Stop

    def _sleep(self, seconds: float, wake_early: bool = False) -> None:
        """Wait, but return at once on stop(); with `wake_early`, also on engine requests."""
        if wake_early:
            if self._wake.wait(seconds):
                self._wake.clear()
        elif seconds > 0:
            self._stopping.wait(seconds)
        self._check_stop()

    def __repr__(self) -> str:
        return f"CcnetAcceptor({self._port_url!r}, profile={self._profile.name!r})"


def check_ccnet_profile(profile: Profile) -> Profile:
    if profile.kind != "acceptor" or profile.protocol != PROTOCOL:
        raise ProfileError(
            f"{profile.path}: profile {profile.name!r} is {profile.kind}/{profile.protocol},"
            f" not acceptor/{PROTOCOL}"
        )
    return profile


def profile_address(profile: Profile) -> int:
    """[ccnet] address (default 0x03, bill validator), validated against the known ones."""
    address = profile.get("ccnet.address", int, int(Address.BILL_VALIDATOR))
    if address not in {a.value for a in Address}:
        raise ProfileError(f"{profile.path}: key 'ccnet.address' must be one of "
                           f"{sorted(a.value for a in Address)}, got {address}")
    return address


def _is_ack(reply: Reply) -> bool:
    return isinstance(reply, ControlReply) and reply.code == Control.ACK

