"""`AcceptorRunner`: what every serial bill acceptor driver does around its protocol.

One line thread owns the port (half-duplex, one outstanding request). The engine's calls
(`enable`, `stack`, `return_bill`, ...) only record intent under a lock and wake the
thread, so they never block and never put a second frame on the line. The thread
connects, runs a session until the link fails, reports OFFLINE and reconnects; listener
exceptions are logged and never end it. Between polls it executes the engine's requests,
keeps the enable mask where the engine wants it and reports a state that lasts too long
as a jam.

Escrow is handled here too: its money rules (docs/invariants.md M1-M4) are the same for both
protocols, only the command bytes differ. A bill is a question to the engine; an unknown
bill, a listener error or a hold that never ends returns it; a STACK or RETURN whose reply
was lost is repeated, not asked again.

A protocol is composed in, not inherited: its `ProtocolAdapter` (`drivers.ccnet.device`,
`drivers.id003.device`) is the state machine - how to poll, what each state means, RESET
and initialization, identification, the enable mask, the credit and its ACK - and
`ProtocolTraits` say which of its states mean what to the runner. The adapter does no
I/O: each of its steps yields effects (`drivers.acceptor_effects`: requests, the credit,
status, escrow...) that the runner performs in `_perform`, and it reads the runner only
through the read-only `AdapterView`. It keeps its own protocol state itself.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypedDict, TypeVar

from drivers import acceptor_effects as fx
from drivers.acceptor import (
    AcceptorError,
    AcceptorListener,
    AcceptorStatus,
    Bill,
    DeviceInfo,
    EscrowDecision,
    StackedBill,
)
from drivers.acceptor_effects import AdapterView, Effect, Effects, Escrow, Phase
from drivers.acceptor_timing import AcceptorTiming
from drivers.bill_cache import load_bills, save_bills
from drivers.clock import SYSTEM_CLOCK, Clock
from drivers.frame_link import LinkError, NoReply, PortError, SerialPort
from drivers.framelog import FrameLog
from drivers.profiles import Profile, SerialSettings
from drivers.transport import open_port

STOP_JOIN_S = 10.0
UNIDENTIFIED = "unidentified"

PortOpener = Callable[[str, SerialSettings], SerialPort]

READ_TIMEOUT_S = 0.01
"""Port read granularity of both acceptor links: how late a link notices its deadline."""


def default_opener(url: str, settings: SerialSettings) -> SerialPort:
    """The real port (or pty) with the profile's line settings and the short read timeout
    the links need (a pty opens as 8N1: see `drivers.transport.open_port`)."""
    return open_port(url, settings, timeout_s=READ_TIMEOUT_S)


class RequestLink(Protocol):
    """What the runner asks of a protocol's link: one request and its parsed reply, a
    poll whose reply is acknowledged later, and the late replies found on the way."""

    def request(self, command: Any, data: bytes = ..., timeout_s: float | None = ...) -> Any: ...

    def exchange(self, command: Any, data: bytes = ..., timeout_s: float | None = ...
                 ) -> Any: ...

    def take_late(self) -> list[Any]: ...


TimingT = TypeVar("TimingT", bound=AcceptorTiming)
LinkT = TypeVar("LinkT", bound=RequestLink)

_QUIET_DETAIL = frozenset({AcceptorStatus.ACCEPTING, AcceptorStatus.INITIALIZING})
"""Statuses whose detail changes with every sub-state; only the status change is reported."""
_SENT_DECISIONS = (EscrowDecision.STACK, EscrowDecision.RETURN)


class Stop(Exception):
    """Raised inside the line thread to unwind when stop() was called."""


@dataclass(frozen=True)
class ProtocolTraits:
    """What a protocol's names and states mean to the runner."""

    protocol: str
    """`DeviceInfo.protocol` and the frame log's name."""
    label: str
    """The protocol's name in logs and errors ("CCNET")."""
    unit: str
    """What the protocol's documents call the hardware ("device", "unit")."""
    power_up_states: frozenset[int]
    """States a unit reports after losing power: it needs a RESET."""
    initializing_states: frozenset[int]
    """States of a unit that has not finished its start-up after RESET."""
    credit_state: int
    """The unacknowledged credit report a RESET must never be sent on top of."""
    in_bill_path: frozenset[int]
    """States with a bill moving or waiting in the path."""
    transient_states: frozenset[int]
    """States a bill passes through; staying in one too long is a jam."""
    log: logging.Logger
    """The protocol module's logger, so records keep their origin."""


class ProtocolAdapter(Protocol):
    """One protocol's state machine, driven by the runner's line thread. The steps that
    talk to the unit are generators of effects (`drivers.acceptor_effects`); the rest
    answer from the adapter's own state."""

    def new_link(self, port: SerialPort) -> Any:
        """The protocol's link on `port`, with the runner's current timing."""

    def leave_disabled(self) -> Effects[None]:
        """M4 on the way out: the unit takes no bill once the driver is gone."""

    def poll(self) -> Effects[object | None]:
        """One poll: note the state, act on it; None when the reply was not a state."""

    def reset_unit(self) -> Effects[None]:
        """Send RESET and forget what the unit had been told (mask, settings)."""

    def initializing(self, code: int | None) -> Effects[None]:
        """Called on every poll while the unit initializes."""

    def init_poll_delay(self, reply: Any) -> float:
        """How long to wait before the next poll while the unit initializes."""

    def initialized(self) -> Effects[None]:
        """The unit is up and identified: leave it disabled until the engine asks (M4)."""

    def may_identify(self) -> bool:
        """Whether the unit answers identification requests in its current state."""

    def identify(self) -> Effects[None]:
        """Ask the unit who it is; `Identified` on an answer."""

    def read_bill_table(self) -> Effects[None]:
        """Ask the unit for its bills; `StoreBills` with the answer."""

    def identity(self) -> tuple[str, str, str]:
        """Model, serial number and firmware, as the protocol's identification said."""

    def sync_enable(self) -> Effects[None]:
        """Bring the unit's enable mask to what the engine wants (only when settled)."""

    def send_decision(self, esc: Escrow, decision: EscrowDecision) -> Effects[None]:
        """Send `decision` (STACK, RETURN or HOLD; already `esc.decision`) to the unit."""

    def warn_unnamed_escrow(self, esc: Escrow) -> None:
        """Log why a bill in escrow that the driver cannot name is returned."""

    def next_poll_delay(self) -> float:
        """How long to wait before the next poll in the current state."""

    def describe(self, code: int, data: Any) -> str:
        """Readable detail of a state, with the raw code."""

    def settle_power_up(self) -> Effects[None]:
        """Resolve, between polls, a power-up with a bill inside."""

    def profile_adopted(self, profile: Profile) -> None:
        """Take what else `profile` says besides timing."""

    def unusable_hint(self) -> str:
        """What the technician can do about an unusable table ("; ...")."""


class AcceptorOptions(TypedDict, total=False):
    """What every serial acceptor takes besides its port, profile and timing, whatever its
    protocol (`CcnetAcceptor(port, profile, **options)`, `Id003Acceptor(...)`)."""

    frame_log: FrameLog | None
    """Raw frames go here (caller-owned), or to a log the driver opens at
    `frame_log_path` and closes on stop."""
    frame_log_path: Path | None
    auto_profiles: Iterable[Profile]
    """With these, `profile` is only the starting point: after identification the first
    whose patterns match takes over (its timing; the working line settings are kept)."""
    known_bills: Iterable[Bill]
    """The bills before the unit has answered its bill-table request (after a crash
    between a credit and its ACK the unit reports the bill first)."""
    bill_table_cache: Path | None
    """Where the unit's table is kept for the next start (rewritten whenever read)."""
    currency: str | None
    """The terminal's currency (ISO 4217): `enable` takes only its notes."""
    opener: PortOpener
    clock: Clock


class AcceptorRunner(Generic[LinkT, TimingT]):
    """A `drivers.acceptor.BillAcceptor` on one serial port, run by one line thread;
    `adapter(view)` builds the protocol's state machine it drives. `check` refuses a
    profile that is not the protocol's (the starting one and every auto profile, now: a
    bad profile is a start-up error, not a surprise); `timing_of` reads its timing."""

    def __init__(
        self,
        port: str,
        profile: Profile,
        *,
        traits: ProtocolTraits,
        check: Callable[[Profile], object],
        timing_of: Callable[[Profile], TimingT],
        adapter: Callable[[AdapterView[TimingT]], ProtocolAdapter],
        timing: TimingT | None = None,
        frame_log: FrameLog | None = None,
        frame_log_path: Path | None = None,
        auto_profiles: Iterable[Profile] = (),
        known_bills: Iterable[Bill] = (),
        bill_table_cache: Path | None = None,
        currency: str | None = None,
        opener: PortOpener = default_opener,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        check(profile)
        timing = timing if timing is not None else timing_of(profile)
        auto: list[tuple[Profile, TimingT]] = []
        for candidate in auto_profiles:
            check(candidate)
            auto.append((candidate, timing_of(candidate)))
        self._traits = traits
        self._log = traits.log
        self._port_url = port
        self._clock = clock
        self._profile = profile
        self._timing = timing
        self._auto = list(auto)  # (profile, its timing): identification may pick one
        self._owns_frame_log = frame_log is None and frame_log_path is not None
        self._frame_log = frame_log or FrameLog(f"{traits.protocol}.{port}", frame_log_path)
        self._bill_cache = bill_table_cache
        self._opener = opener
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
        self._info = DeviceInfo(protocol=traits.protocol, profile=profile.name)
        self._wanted_amounts: frozenset[int] = frozenset()
        self._engine_actions: collections.deque[EscrowDecision] = collections.deque()

        # owned by the line thread
        self._port: SerialPort | None = None
        self._link: LinkT | None = None
        self._exchange: Any = None  # the last poll's exchange, until its reply is ACKed
        known = tuple(known_bills) or (load_bills(bill_table_cache) if bill_table_cache else ())
        self._bills: dict[int, Bill] = {b.bill_type: b for b in known}
        self._need_ident = True  # (re)read after every RESET: the unit may have been swapped
        self._need_table = True
        self._ident_tried_in: int | None = None  # state of the last attempt (one per state)
        self._phase = Phase.STARTING
        self._resumable = False  # True once this run has initialised the device
        self._reset_needed = False
        self._last_state: tuple[int, Any] | None = None  # code and its data, last reported
        self._state_code: int | None = None
        self._state_since = 0.0
        self._stuck_reported = False
        self._escrow: Escrow | None = None
        self._unusable: str | None = None  # why the unit can take no note (see store_bills)
        self._raw_status = (AcceptorStatus.OFFLINE, "not started")  # as the protocol said
        self._protocol = adapter(self)

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
            raise AcceptorError(f"{self._traits.label} acceptor already started")
        self._listener = listener
        self._thread = threading.Thread(
            target=self._run, name=f"{self._traits.protocol}-line:{self._port_url}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Leave the unit disabled (best effort), close the port, end the line thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_S)
            if self._thread.is_alive():
                self._log.error("%s line thread did not stop within %.0f s", self._traits.label,
                               STOP_JOIN_S)

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

    # -- what an adapter reads (AdapterView; line thread only) ---------------------------

    @property
    def traits(self) -> ProtocolTraits:
        return self._traits

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def timing(self) -> TimingT:
        return self._timing

    @property
    def frame_log(self) -> FrameLog:
        return self._frame_log

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def currency(self) -> str | None:
        """The terminal's currency (ISO 4217), None: any."""
        return self._currency

    @property
    def bills(self) -> Mapping[int, Bill]:
        """The unit's bills by the protocol's code (read-only: `store_bills` changes it)."""
        return self._bills

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def state_code(self) -> int | None:
        """The state of the last poll (`note_state`)."""
        return self._state_code

    @property
    def last_state(self) -> tuple[int, Any] | None:
        """The last state reported (`record_state`): its code and data."""
        return self._last_state

    @property
    def stuck_reported(self) -> bool:
        """The current state lasted too long and was reported as a jam."""
        return self._stuck_reported

    @property
    def escrow(self) -> Escrow | None:
        return self._escrow

    def wanted_amounts(self) -> frozenset[int]:
        """The amounts the engine wants taken now (empty: M4, take none)."""
        with self._lock:
            return self._wanted_amounts

    # -- line thread: the adapter's effects ----------------------------------------------

    def _drive(self, step: Effects[Any], stopping: bool = False) -> Any:
        """Run one step of the adapter: perform each effect it yields and send it the
        result; an error of an effect (the link failed, stop()) is thrown into the step
        where the effect was asked for, so the step unwinds as if it had made the call.
        `stopping`: the last requests on the way out, made even after stop()."""
        result: Any = None
        error: Exception | None = None
        while True:
            try:
                effect = step.throw(error) if error is not None else step.send(result)
            except StopIteration as done:
                return done.value
            try:
                result, error = self._perform(effect, stopping), None
            except Exception as exc:
                result, error = None, exc

    def _perform(self, effect: Effect, stopping: bool = False) -> Any:
        """What each effect means to the runner (drivers.acceptor_effects)."""
        match effect:
            case fx.Send(command, data, timeout_s):
                if not stopping:
                    self._check_stop()
                return self.require_link().request(command, data, timeout_s)
            case fx.Poll(command):
                return self._poll(command)
            case fx.Ack():
                if self._exchange is not None:
                    self._exchange.ack()
                return None
            case fx.NoteState(code):
                return self._note_state(code)
            case fx.RecordState(code, data):
                return self._record_state(code, data)
            case fx.SetStatus(status, detail):
                return self._set_status(status, detail)
            case fx.ClearEscrow():
                self._escrow = None
                return None
            case fx.RequestReset():
                self._reset_needed = True
                return None
            case fx.Identified(what, ident):
                self._need_ident = False  # not asked again until the next RESET
                self._adopt_profile(what, ident)
                return self._publish_info()
            case fx.StoreBills(bills, differs):
                return self._store_bills(dict(bills), differs)
            case fx.InEscrow(code):
                return self._on_escrow(code)
            case fx.Held():
                return self._on_holding()
            case fx.Credit(stacked):
                return self._offer_credit(stacked)
            case fx.Returned(bill):
                return self._notify("on_returned", lambda lst: lst.on_returned(bill))
            case fx.Rejected(reason):
                return self._notify("on_rejected", lambda lst: lst.on_rejected(reason))
        raise AcceptorError(f"unknown effect {effect!r}")  # pragma: no cover - a driver bug

    def _poll(self, command: int) -> fx.Polled:
        """One poll exchange, kept for a later `Ack`; with the late replies the link found
        before it, even when it failed (the adapter takes them in, then re-raises)."""
        link = self.require_link()
        self._exchange = None
        try:
            self._exchange = link.exchange(command)
        except Exception as exc:  # the late replies first, whatever the failure
            return fx.Polled(None, tuple(link.take_late()), exc)
        return fx.Polled(self._exchange.reply, tuple(link.take_late()))

    def _record_state(self, code: int, data: Any) -> bool:
        """The state just reported, with its data; True when it differs from the last one
        (a new event, not a repeat of the same report)."""
        new_event = self._last_state != (code, data)
        self._last_state = (code, data)
        return new_event

    def _offer_credit(self, stacked: StackedBill) -> bool:
        """Offer a stacked bill to the engine (M1: only at the point of no return).

        True when the listener returned: the ledger has it, and only now may the unit's
        report be acknowledged (M2). False when it raised: the report is not ACKed, the
        unit repeats it and it is offered again under the same event key.
        """
        try:
            self.require_listener().on_stacked(stacked)
        except Exception:
            self._log.exception("on_stacked failed for %s; not acknowledging, the %s will "
                                "repeat", stacked.event_key, self._traits.unit)
            return False
        return True

    # -- line thread: connection ---------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._connect()
                    self._session()
                except Stop:
                    break
                except PortError as exc:
                    self._lost(f"port error: {exc}")
                except NoReply as exc:
                    self._lost(f"no answer: {exc}")
                except Exception as exc:  # a driver bug must not end the line thread
                    self._log.exception("%s line thread error", self._traits.label)
                    self._lost(f"driver error: {exc}")
                try:
                    self._sleep(self._timing.reconnect_s)
                except Stop:
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
        self._link = self._protocol.new_link(port)
        self._log.info("%s port %s open", self._traits.label, self._port_url)

    def _lost(self, detail: str) -> None:
        """The unit stopped answering or the port vanished: close, report, retry later."""
        self._ready.clear()
        self._close_port()
        self._phase = Phase.STARTING
        self._set_status(AcceptorStatus.OFFLINE, detail)

    def _close_port(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except Exception:  # closing a vanished port may fail in many ways; it is gone
                self._log.debug("closing %s failed", self._port_url, exc_info=True)
        self._port = None
        self._link = None

    def _shutdown(self) -> None:
        if self._link is not None:
            try:
                self._drive(self._protocol.leave_disabled(), stopping=True)
            except LinkError:
                pass
        self._close_port()
        self._ready.clear()
        self._set_status(AcceptorStatus.OFFLINE, "stopped")
        if self._owns_frame_log:
            self._frame_log.close()

    # -- line thread: sessions -----------------------------------------------------------

    def _session(self) -> None:
        """Talk to the unit until the link fails (exception) or stop() (Stop)."""
        self._phase = Phase.STARTING
        reply = self._drive(self._protocol.poll())
        rebooted = reply is not None and self._state_code in self._traits.power_up_states
        if not self._resumable or rebooted or self._reset_needed:
            self._drain_bill_path()
            self._reset_and_initialize()
        else:
            self._log.info("%s link back, %s %s: resuming without RESET", self._traits.label,
                           self._traits.unit, self._describe_last("unknown"))
        self._phase = Phase.RUNNING
        self._ready.set()
        while True:
            self._check_stop()
            if self._reset_needed:
                self._ready.clear()
                self._reset_and_initialize()
                self._phase = Phase.RUNNING
                self._ready.set()
            self._run_engine_actions()
            self._drive(self._protocol.settle_power_up())
            self._identify_if_needed()
            self._drive(self._protocol.sync_enable())
            self._drive(self._protocol.poll())
            self._check_stuck()
            self._sleep(self._protocol.next_poll_delay(), wake_early=True)

    def _drain_bill_path(self) -> None:
        """Before a RESET, let a bill in motion finish and a credit report be credited.

        A moving bill gets at most the stuck-state time. An unacknowledged credit report
        gets as long as it takes: a RESET on top of it could lose the event [U] (an ID-003
        unit makes no progress until it is ACKed), and a listener that keeps failing
        means the ledger is down (M10), where waiting is right.
        """
        deadline = self._clock.monotonic() + self._timing.stuck_state_s
        while self._state_code == self._traits.credit_state or (
            self._state_code in self._traits.in_bill_path and self._clock.monotonic() < deadline
        ):
            self._sleep(self._timing.active_poll_s)
            self._drive(self._protocol.poll())

    def _reset_and_initialize(self) -> None:
        """RESET, wait through power-up and initialization, identify, stay disabled."""
        self._phase = Phase.INITIALIZING
        self._reset_needed = False
        self._set_status(AcceptorStatus.INITIALIZING, "reset")
        self._drive(self._protocol.reset_unit())
        self._escrow = None
        self._need_ident = self._need_table = True
        self._ident_tried_in = None
        self._sleep(self._timing.reset_wait_s)
        if not self._wait_initialized():
            return
        self._resumable = True
        self._identify_if_needed()
        self._drive(self._protocol.initialized())

    def _wait_initialized(self) -> bool:
        """Poll until the unit has left its initializing states; False (and FAILURE
        reported) when it has not within the init timeout."""
        deadline = self._clock.monotonic() + self._timing.init_timeout_s
        while True:
            try:
                reply = self._drive(self._protocol.poll())
            except NoReply:
                reply = None  # some units are silent while they reset
                if self._clock.monotonic() > deadline:
                    raise
            code = self._state_code if reply is not None else None
            self._drive(self._protocol.initializing(code))
            traits = self._traits
            if code is not None and code not in traits.initializing_states | {traits.credit_state}:
                return True
            if self._clock.monotonic() > deadline:
                last = self._describe_last("no answer")
                self._set_status(
                    AcceptorStatus.FAILURE,
                    f"initialization not finished after {self._timing.init_timeout_s:g} s"
                    f" ({last})",
                )
                return False
            self._sleep(self._protocol.init_poll_delay(reply))

    # -- line thread: identification and the bill table ----------------------------------

    def _identify_if_needed(self) -> None:
        """Identification and the bill table, once per state in which the unit allows them
        (a unit that keeps refusing is not asked on every poll)."""
        if not (self._need_ident or self._need_table):
            return
        if not self._protocol.may_identify() or self._ident_tried_in == self._state_code:
            return
        self._ident_tried_in = self._state_code
        if self._need_ident:
            self._drive(self._protocol.identify())
        if self._need_table:
            self._drive(self._protocol.read_bill_table())

    def _adopt_profile(self, what: str, ident: str) -> None:
        """After identification: the first auto profile whose patterns match `ident` (the
        unit's `what`) takes over; the line settings that already work are kept."""
        match = next(((p, t) for p, t in self._auto if p.matches(ident)), None)
        if match is None:
            if not self._profile.matches(ident):
                self._log.warning("%s %r does not match profile %s", what, ident,
                                 self._profile.name)
            return
        profile, timing = match
        if profile is self._profile:
            return
        if profile.serial != self._profile.serial:
            self._log.warning("profile %s wants %s; keeping the working line settings %s",
                             profile.name, profile.serial, self._profile.serial)
        self._log.info("%s %s %s: using profile %s", self._traits.label, what, ident, profile.name)
        self._profile = profile
        self._timing = timing
        self._protocol.profile_adopted(profile)
        if self._port is not None:
            self._link = self._protocol.new_link(self._port)

    def _store_bills(self, bills: dict[int, Bill], differs: str) -> None:
        """The unit's table replaces the known one (`differs` is logged if they differ)
        and is cached on disk for the next start."""
        if self._bills and self._bills != bills:
            self._log.warning(differs)
        changed = bills != self._bills
        self._bills = bills
        self._need_table = False
        self._publish_info()
        self._check_usable()
        if changed and self._bill_cache is not None:
            try:
                save_bills(self._bill_cache, bills.values())
            except OSError as exc:
                self._log.warning("cannot write bill-table cache %s: %s", self._bill_cache, exc)

    def _check_usable(self) -> None:
        """A unit whose table holds no note of the terminal's currency (or no note this
        driver can name at all) takes no money: while that lasts every status is reported
        as FAILURE with the reason, so the engine puts the terminal out of service instead
        of sending customers to a cash screen that takes nothing."""
        wanted = self._currency
        if any(wanted is None or b.currency == wanted for b in self._bills.values()):
            unusable = None
        else:
            have = sorted({b.currency for b in self._bills.values()})
            has = f"it has only {', '.join(have)} notes" if have else "it names no note"
            note = f"{wanted} " if wanted else ""
            unusable = (
                f"купюроприёмник не примет ни одной купюры {note}/ the bill acceptor can take "
                f"no {note}note: none in its bill table ({has}){self._protocol.unusable_hint()}"
            )
        if unusable == self._unusable:
            return
        self._unusable = unusable
        if unusable is not None:
            self._log.error("%s unusable: %s", self._traits.label, unusable)
        else:
            self._log.info("%s bill table usable again", self._traits.label)
        self._set_status(*self._raw_status)

    def _publish_info(self) -> None:
        """What the unit said about itself, and its bills, as the engine sees them."""
        model, serial_number, firmware = self._protocol.identity()
        info = DeviceInfo(
            protocol=self._traits.protocol,
            model=model,
            serial_number=serial_number,
            firmware=firmware,
            profile=self._profile.name,
            bill_table=tuple(self._bills[c] for c in sorted(self._bills)),
        )
        with self._lock:
            self._info = info

    def _bill_for(self, code: int | None) -> Bill | None:
        return self._bills.get(code) if code is not None else None

    # -- line thread: states -------------------------------------------------------------

    def _note_state(self, code: int) -> None:
        if code != self._state_code:
            self._state_code = code
            self._state_since = self._clock.monotonic()
            self._stuck_reported = False

    def _describe_last(self, default: str) -> str:
        last = self._last_state
        return self._protocol.describe(*last) if last else default

    def _check_stuck(self) -> None:
        if self._state_code not in self._traits.transient_states or self._stuck_reported:
            return
        elapsed = self._clock.monotonic() - self._state_since
        if elapsed > self._timing.stuck_state_s:
            self._stuck_reported = True
            self._set_status(
                AcceptorStatus.JAMMED,
                f"stuck in {self._describe_last('?')}"
                f" for {elapsed:.0f} s",
            )

    # -- line thread: escrow -------------------------------------------------------------

    def _on_escrow(self, code: int | None) -> None:
        esc = self._escrow
        if esc is None or esc.code != code:
            esc = self._escrow = Escrow(code, self._bill_for(code), self._clock.monotonic())
        if esc.decision in _SENT_DECISIONS:
            # our command was lost: repeat, not re-ask
            self._drive(self._protocol.send_decision(esc, esc.decision))
        else:
            self._decide(esc)

    def _on_holding(self) -> None:
        esc = self._escrow
        if esc is None:
            # Holding a bill we never saw in escrow (driver restarted): we cannot credit
            # what we cannot name, so give it back.
            esc = self._escrow = Escrow(None, None, self._clock.monotonic(), EscrowDecision.HOLD)
        if esc.decision in _SENT_DECISIONS:
            self._drive(self._protocol.send_decision(esc, esc.decision))
        else:
            self._decide(esc)

    def _decide(self, esc: Escrow) -> None:
        decision: EscrowDecision | None = None
        if esc.decision is EscrowDecision.HOLD:
            decision = self._take_engine_action()
        if decision is None:
            if esc.bill is None:
                self._protocol.warn_unnamed_escrow(esc)
                decision = EscrowDecision.RETURN
            elif (
                esc.decision is EscrowDecision.HOLD
                and self._clock.monotonic() - esc.since > self._timing.escrow_hold_max_s
            ):
                self._log.warning("bill held longer than %.0f s; returning",
                                 self._timing.escrow_hold_max_s)
                decision = EscrowDecision.RETURN
            else:
                decision = self._ask_escrow(esc.bill)
        esc.decision = decision
        self._drive(self._protocol.send_decision(esc, decision))

    def _ask_escrow(self, bill: Bill) -> EscrowDecision:
        try:
            decision = self.require_listener().on_escrow(bill)
        except Exception:
            self._log.exception("on_escrow failed; returning the bill")
            return EscrowDecision.RETURN
        if not isinstance(decision, EscrowDecision):
            self._log.error("on_escrow returned %r; returning the bill", decision)
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
                self._drive(self._protocol.send_decision(esc, action))
            return
        with self._lock:
            stale = list(self._engine_actions)
            self._engine_actions.clear()
        for action in stale:
            self._log.warning("%s requested but no bill is held in escrow; ignored",
                             action.value)

    # -- line thread: status and helpers -------------------------------------------------

    def _set_status(self, status: AcceptorStatus, detail: str) -> None:
        self._raw_status = (status, detail)
        if self._unusable is not None and status is not AcceptorStatus.OFFLINE:
            status, detail = AcceptorStatus.FAILURE, self._unusable
        with self._lock:
            changed = status != self._status or (
                detail != self._detail and status not in _QUIET_DETAIL
            )
            self._status = status
            self._detail = detail
        if changed and self._listener is not None:
            self._log.info("%s status %s: %s", self._traits.label, status.value, detail)
            self._notify("on_status", lambda lst: lst.on_status(status, detail))

    def _notify(self, what: str, call: Callable[[AcceptorListener], object]) -> None:
        """Listener exceptions are logged, never allowed to end the line thread."""
        try:
            call(self.require_listener())
        except Exception:
            self._log.exception("listener %s failed", what)

    def require_listener(self) -> AcceptorListener:
        if self._listener is None:
            raise AcceptorError(f"{self._traits.label} acceptor used before start()")
        return self._listener

    def require_link(self) -> LinkT:
        if self._link is None:
            raise PortError("port not open")
        return self._link

    def _check_stop(self) -> None:
        if self._stopping.is_set():
            raise Stop

    def _sleep(self, seconds: float, wake_early: bool = False) -> None:
        """Wait, but return at once on stop(); with `wake_early`, also on engine requests."""
        if wake_early:
            if self._clock.wait(self._wake, seconds):
                self._wake.clear()
        elif seconds > 0:
            self._clock.wait(self._stopping, seconds)
        self._check_stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._port_url!r}, profile={self._profile.name!r})"
