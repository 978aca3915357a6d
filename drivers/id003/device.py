"""`Id003Acceptor`: a JCM ID-003 bill acceptor as a `drivers.acceptor.BillAcceptor`.

One line thread owns the port (half-duplex, one outstanding request): it runs the
start-up sequence (RESET, settings while the unit initializes, VERSION and CURRENCY
ASSIGN), polls with STATUS REQUEST, turns statuses into listener calls and executes the
engine's requests between polls. The engine's calls only record intent and wake the
thread, so they never block and never put a second frame on the line.

Money rules (DESIGN.md M1-M4, M6; bill-acceptors.md §2, §5):
- credit only on VEND VALID (0x15), ACKed only after `on_stacked` returned; if it raises,
  no ACK, and the repeat is offered again with the same event key (`eventkeys`). The
  STACKED (0x16) that follows is the same bill and credits nothing;
- escrow is a question to the engine; an unknown bill, a barcode ticket, a listener error
  or a hold that never ends returns the bill;
- the unit is inhibited after start-up and whenever the engine wants no bills; the
  denomination mask and INHIBIT are re-applied after any reset, re-initialization or
  reconnect;
- power-up with a bill in the acceptor (0x41): RESET gives it back, reported as returned
  [U]; with a bill in the stacker (0x42): credited once, flagged `recovered` — by the
  VEND VALID that power recovery replays (OPTIONAL FUNCTION 0x02), or, when none comes, by
  the driver for the bill it sent STACK for (`marker`) [U]. A VEND VALID this run never
  asked for is flagged `recovered` too, so the engine reconciles it (M6).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import os
import re
import secrets
import termios
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
from drivers.ccnet.billtable import load_bills, save_bills
from drivers.framelog import FrameLog
from drivers.id003.currency import bills_of, codes_for, encode_inhibit_mask
from drivers.id003.eventkeys import VendEdge
from drivers.id003.link import Id003Link, LinkError, NoReply, PortError, SerialPort
from drivers.id003.marker import StackMarker
from drivers.id003.protocol import (
    COMMUNICATION_MODE_POLLED,
    INHIBIT_OFF,
    INHIBIT_ON,
    Command,
    OptionalFunction,
)
from drivers.id003.replies import (
    AckReply,
    CurrencyTable,
    InvalidCommand,
    Reply,
    SettingEcho,
    StatusReply,
    VersionReply,
)
from drivers.id003.settings import Id003Settings
from drivers.id003.states import (
    BARCODE_TICKET,
    IN_BILL_PATH,
    INITIALIZING_STATES,
    POWER_UP_STATES,
    SETTLED_STATES,
    TRANSIENT_STATES,
    Status,
    abstract_status,
    describe,
    reject_reason_text,
)
from drivers.id003.timing import Id003Timing
from drivers.profiles import Profile, ProfileError, SerialSettings
from drivers.transport import open_port

log = logging.getLogger(__name__)

PROTOCOL = "id003"
READ_TIMEOUT_S = 0.01
"""Port read granularity: how late the link notices its deadline, at most."""
STOP_JOIN_S = 10.0
UNIDENTIFIED = "unidentified"

PortOpener = Callable[[str, SerialSettings], SerialPort]
NO_PARITY = "N"
_PTY_SLAVE_MAJORS = range(136, 144)
"""Linux device majors of Unix98 pty slaves (/dev/pts/N)."""

_QUIET_DETAIL = frozenset({AcceptorStatus.ACCEPTING, AcceptorStatus.INITIALIZING})
"""Statuses whose detail changes with every sub-state; only the status change is reported."""
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9()_.-]")
_OPTIONAL_FUNCTIONS = (Command.COMMUNICATION_MODE, Command.OPTIONAL_FUNCTION)
"""Settings an older firmware may not know (INVALID COMMAND is then logged, not fatal)."""


def default_opener(url: str, settings: SerialSettings) -> SerialPort:
    return open_with(lambda u, s: open_port(u, s, timeout_s=READ_TIMEOUT_S), url, settings)


def open_with(opener: PortOpener, url: str, settings: SerialSettings) -> SerialPort:
    """`opener(url, settings)`, tolerating a pseudo-terminal's lack of parity.

    A pty has no parity bit: Linux drops PARENB, and (seen on 6.x kernels) refuses with
    EINVAL a tcsetattr whose only change is PARENB, so the second open of the same pty at
    8E1 fails inside pyserial with termios.error, which is not an OSError. On a pty the
    parity setting means nothing, so it is opened as 8N1; anything else is an OSError.
    """
    try:
        return opener(url, settings)
    except termios.error as exc:
        if settings.parity != NO_PARITY and _is_pty(url):
            return opener(url, dataclasses.replace(settings, parity=NO_PARITY))
        raise OSError(f"cannot open serial port {url}: {exc}") from exc


def _is_pty(url: str) -> bool:
    try:
        rdev = os.stat(url).st_rdev
    except (OSError, ValueError):
        return False
    return os.major(rdev) in _PTY_SLAVE_MAJORS


class _Stop(Exception):
    """Raised inside the line thread to unwind when stop() was called."""


class _Phase(enum.Enum):
    STARTING = "starting"
    INITIALIZING = "initializing"
    RUNNING = "running"


@dataclass
class _Escrow:
    """The bill currently in escrow and what has been decided about it."""

    code: int | None
    bill: Bill | None
    since: float
    decision: EscrowDecision | None = None


class Id003Acceptor:
    """JCM ID-003 bill acceptor (UBA, iVIZION, ...) on one serial port.

    `port` is a device path, a pty path or a pyserial URL; `profile` supplies serial
    settings (9600 8E1), [timing] and [id003]. With `auto_profiles`, `profile` is only the
    starting point: after VERSION REQUEST the first of them whose patterns match the
    version string takes over (its timing and settings; the line settings that already
    work are kept).

    Raw frames go to `frame_log` (caller-owned) or to a log the driver opens at
    `frame_log_path` and closes on stop.

    `known_bills` / `bill_table_cache` name the denominations before the unit has answered
    CURRENCY ASSIGN (the cache is rewritten whenever the unit's table is read);
    `stack_marker` is the file that names the bill STACK was last sent for (see
    `marker`). Both matter only after a crash or a power cut with a bill in the stacker.
    `currency` (ISO 4217), if given, restricts `enable` to that currency.
    """

    def __init__(
        self,
        port: str,
        profile: Profile,
        *,
        frame_log: FrameLog | None = None,
        frame_log_path: Path | None = None,
        timing: Id003Timing | None = None,
        auto_profiles: Iterable[Profile] = (),
        known_bills: Iterable[Bill] = (),
        bill_table_cache: Path | None = None,
        stack_marker: Path | None = None,
        currency: str | None = None,
        opener: PortOpener = default_opener,
    ) -> None:
        check_id003_profile(profile)
        self._port_url = port
        self._profile = profile
        self._timing = timing or Id003Timing.from_profile(profile)
        self._settings = Id003Settings.from_profile(profile)
        # every candidate is validated now: a bad profile is a start-up error, not a surprise
        self._auto = [
            (p, Id003Timing.from_profile(check_id003_profile(p)), Id003Settings.from_profile(p))
            for p in auto_profiles
        ]
        self._owns_frame_log = frame_log is None and frame_log_path is not None
        self._frame_log = frame_log or FrameLog(f"{PROTOCOL}.{port}", frame_log_path)
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
        self._info = DeviceInfo(protocol=PROTOCOL, profile=profile.name)
        self._wanted_amounts: frozenset[int] = frozenset()
        self._engine_actions: collections.deque[EscrowDecision] = collections.deque()

        # owned by the line thread
        self._port: SerialPort | None = None
        self._link: Id003Link | None = None
        known = tuple(known_bills) or (load_bills(bill_table_cache) if bill_table_cache else ())
        self._bills: dict[int, Bill] = {b.bill_type: b for b in known}
        self._version: VersionReply | None = None
        self._need_ident = True  # (re)read after every RESET: the unit may have been swapped
        self._need_table = True
        self._ident_tried_in: int | None = None  # state of the last attempt (one per state)
        self._configured = False  # settings taken since the last RESET
        self._configure_tried_in: int | None = None  # state of the last refused attempt
        self._applied_codes: frozenset[int] | None = None  # codes the unit's mask enables
        self._phase = _Phase.STARTING
        self._resumable = False  # True once this run has initialised the device
        self._reset_needed = False
        self._last_status: tuple[int, bytes] | None = None
        self._state_code: int | None = None
        self._state_since = 0.0
        self._stuck_reported = False
        self._escrow: _Escrow | None = None
        self._stacking: Bill | None = None  # STACK sent, outcome not known yet
        self._stack_sent = False
        self._powerup: Status | None = None  # 0x41/0x42 seen, not resolved yet
        self._powerup_bill: Bill | None = None
        self._recovery_pending = False
        self._table_retry_key: str | None = None
        self._marker = StackMarker(stack_marker)
        self._edge = VendEdge(self._run_id)

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
            raise AcceptorError("ID-003 acceptor already started")
        self._listener = listener
        self._thread = threading.Thread(
            target=self._run, name=f"id003-line:{self._port_url}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Inhibit the unit (best effort), close the port, end the line thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_S)
            if self._thread.is_alive():
                log.error("ID-003 line thread did not stop within %.0f s", STOP_JOIN_S)

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
                    log.exception("ID-003 line thread error")
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
            port = open_with(self._opener, self._port_url, self._profile.serial)
        except OSError as exc:
            raise PortError(str(exc)) from exc
        self._port = port
        self._link = Id003Link(port, self._timing.link, self._frame_log)
        log.info("ID-003 port %s open", self._port_url)

    def _lost(self, detail: str) -> None:
        """The unit stopped answering or the port vanished: close, report, retry later."""
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
            try:
                self._link.request(Command.INHIBIT, bytes((INHIBIT_ON,)))  # M4
            except LinkError:
                pass
        self._close_port()
        self._ready.clear()
        self._set_status(AcceptorStatus.OFFLINE, "stopped")
        if self._owns_frame_log:
            self._frame_log.close()

    # -- line thread: sessions -----------------------------------------------------------

    def _session(self) -> None:
        """Talk to the unit until the link fails (exception) or stop() (_Stop)."""
        self._phase = _Phase.STARTING
        reply = self._poll()
        rebooted = reply is not None and reply.code in POWER_UP_STATES
        if not self._resumable or rebooted or self._reset_needed:
            self._drain_bill_path()
            self._reset_and_initialize()
        else:
            state = describe(*self._last_status) if self._last_status else "unknown"
            log.info("ID-003 link back, unit %s: resuming without RESET", state)
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
            self._settle_power_up()
            self._identify_if_needed()
            self._sync_enable()
            self._poll()
            self._check_stuck()
            self._sleep(self._next_poll_delay(), wake_early=True)

    def _drain_bill_path(self) -> None:
        """Before a RESET, let a bill in motion finish and a VEND VALID be credited.

        A moving bill gets at most the stuck-state time. An unacknowledged VEND VALID gets
        as long as it takes: the unit makes no progress until it is ACKed ("ID003 Escrow
        Flow" note), and a listener that keeps failing means the ledger is down (M10),
        where waiting is right.
        """
        deadline = time.monotonic() + self._timing.stuck_state_s
        while self._state_code == Status.VEND_VALID or (
            self._state_code in IN_BILL_PATH and time.monotonic() < deadline
        ):
            self._sleep(self._timing.active_poll_s)
            self._poll()

    def _reset_and_initialize(self) -> None:
        """RESET, the settings while the unit initializes (py-id003, Aristocrat), wait for
        it to settle, identify, stay inhibited."""
        self._phase = _Phase.INITIALIZING
        self._reset_needed = False
        self._set_status(AcceptorStatus.INITIALIZING, "reset")
        reply = self._link_request(Command.RESET)
        if not isinstance(reply, AckReply):
            log.warning("RESET answered with %r", reply)
        self._configured = False
        self._configure_tried_in = None
        self._applied_codes = None
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
            code = poll.code if poll is not None else None
            if code == Status.INITIALIZE or code in SETTLED_STATES:
                self._configure()
            if code is not None and code not in INITIALIZING_STATES | {Status.VEND_VALID}:
                break
            if time.monotonic() > deadline:
                last = describe(*self._last_status) if self._last_status else "no answer"
                self._set_status(
                    AcceptorStatus.FAILURE,
                    f"initialization not finished after {self._timing.init_timeout_s:g} s"
                    f" ({last})",
                )
                return
            self._sleep(self._timing.reset_poll_s)
        self._resumable = True
        self._identify_if_needed()
        self._configure()  # a unit that settled before we saw INITIALIZE, or a fault state

    def _configure(self) -> None:
        """Settings for a freshly reset unit: every denomination inhibited, polled mode,
        power recovery as the profile says, INHIBIT on (M4). Once per RESET; a unit that
        refuses is asked again only in another state."""
        if self._configured or self._configure_tried_in == self._state_code:
            return
        self._configure_tried_in = self._state_code
        options = OptionalFunction.POWER_RECOVERY if self._settings.power_recovery else 0
        steps = (
            (Command.ENABLE_DISABLE, encode_inhibit_mask(())),
            (Command.COMMUNICATION_MODE, bytes((COMMUNICATION_MODE_POLLED,))),
            (Command.OPTIONAL_FUNCTION, bytes((int(options), 0))),
            (Command.INHIBIT, bytes((INHIBIT_ON,))),
        )
        taken = True
        for command, data in steps:
            reply = self._link_request(command, data=data)
            if _echoed(reply, command, data):
                if command == Command.ENABLE_DISABLE:
                    self._applied_codes = frozenset()
                continue
            if command in _OPTIONAL_FUNCTIONS and isinstance(reply, InvalidCommand):
                log.warning("acceptor refuses setting 0x%02X (%s): not supported, ignored",
                            command, data.hex())
                continue
            log.warning("setting 0x%02X %s answered with %r", command, data.hex(), reply)
            taken = False
        self._configured = taken

    def _identify_if_needed(self) -> None:
        """VERSION and CURRENCY ASSIGN, once per state (a unit that keeps refusing is not
        asked on every poll)."""
        if not (self._need_ident or self._need_table):
            return
        if self._state_code is None or self._ident_tried_in == self._state_code:
            return
        self._ident_tried_in = self._state_code
        if self._need_ident:
            reply = self._link_request(Command.VERSION_REQUEST, self._timing.link.ident_timeout_s)
            if isinstance(reply, VersionReply):
                self._on_version(reply)
            else:
                log.warning("VERSION REQUEST answered with %r", reply)
        if self._need_table:
            self._read_currency_table()

    def _on_version(self, version: VersionReply) -> None:
        if self._version is not None and self._version.text != version.text:
            log.warning("ID-003 unit replaced or reflashed: %r, was %r", version.text,
                        self._version.text)
        self._version = version
        self._need_ident = False
        self._adopt_profile(version.text)
        self._update_info()

    def _adopt_profile(self, version: str) -> None:
        match = next(((p, t, s) for p, t, s in self._auto if p.matches(version)), None)
        if match is None:
            if not self._profile.matches(version):
                log.warning("version %r does not match profile %s", version, self._profile.name)
            return
        profile, timing, settings = match
        if profile is self._profile:
            return
        if profile.serial != self._profile.serial:
            log.warning("profile %s wants %s; keeping the working line settings %s",
                        profile.name, profile.serial, self._profile.serial)
        log.info("ID-003 version %s: using profile %s", version, profile.name)
        self._profile = profile
        self._timing = timing
        if settings.power_recovery != self._settings.power_recovery:
            self._configured = False  # send OPTIONAL FUNCTION again, with this profile's bit
            self._configure_tried_in = None
        self._settings = settings
        if self._port is not None:
            self._link = Id003Link(self._port, timing.link, self._frame_log)

    def _read_currency_table(self) -> None:
        reply = self._link_request(Command.CURRENCY_ASSIGN_REQUEST,
                                   self._timing.link.ident_timeout_s)
        if not isinstance(reply, CurrencyTable):
            log.warning("CURRENCY ASSIGN REQUEST answered with %r", reply)
            return
        fallback = self._settings.currency
        bills = {b.bill_type: b for b in bills_of(reply.records, fallback)}
        unnamed = [r for r in reply.records if r.base and r.to_bill(fallback) is None]
        if unnamed:
            log.warning("denominations with unknown country numbers are never enabled: %s "
                        "(set [id003] currency in the profile)", unnamed)
        if self._bills and self._bills != bills:
            log.warning("acceptor currency table differs from the known one; using the unit's")
        changed = bills != self._bills
        self._bills = bills
        self._need_table = False
        self._update_info()
        if changed and self._bill_cache is not None:
            try:
                save_bills(self._bill_cache, bills.values())
            except OSError as exc:
                log.warning("cannot write bill-table cache %s: %s", self._bill_cache, exc)

    def _update_info(self) -> None:
        version = self._version
        info = DeviceInfo(
            protocol=PROTOCOL,
            model=version.model if version else "",
            serial_number="",  # ID-003 has no serial-number request [U]
            firmware=version.firmware if version else "",
            profile=self._profile.name,
            bill_table=tuple(self._bills[c] for c in sorted(self._bills)),
        )
        with self._lock:
            self._info = info

    def _model_token(self) -> str:
        model = self._version.model if self._version else ""
        return _KEY_UNSAFE.sub("", model) or UNIDENTIFIED

    # -- line thread: enable mask and inhibit --------------------------------------------

    def _wanted_codes(self) -> frozenset[int]:
        with self._lock:
            amounts = self._wanted_amounts
        return codes_for(self._bills, amounts, self._currency)

    def _sync_enable(self) -> None:
        """Bring the unit's mask and INHIBIT to what the engine wants (only when settled).

        The mask is changed while the unit idles, without inhibiting first [U: whether a
        unit takes 0xC0 in ENABLE; py-id003 and lamassu send it only while initializing].
        """
        if self._state_code not in SETTLED_STATES:
            return
        if not self._configured:
            self._configure()  # the unit was busy with a bill or a fault when it reset
        want = self._wanted_codes()
        enabled = self._state_code == Status.ENABLE
        if want and want != self._applied_codes:
            mask = encode_inhibit_mask(want)
            reply = self._link_request(Command.ENABLE_DISABLE, data=mask)
            if not _echoed(reply, Command.ENABLE_DISABLE, mask):
                log.warning("ENABLE/DISABLE %s answered with %r", mask.hex(), reply)
                return
            self._applied_codes = want
        if bool(want) != enabled:
            value = INHIBIT_OFF if want else INHIBIT_ON
            reply = self._link_request(Command.INHIBIT, data=bytes((value,)))
            if not _echoed(reply, Command.INHIBIT, bytes((value,))):
                log.warning("INHIBIT %d answered with %r", value, reply)

    # -- line thread: polling ------------------------------------------------------------

    def _poll(self) -> StatusReply | None:
        exchange = self._require_link().exchange(Command.STATUS_REQUEST)
        reply = exchange.reply
        if not isinstance(reply, StatusReply):
            log.warning("unexpected STATUS REQUEST reply %r", reply)
            return None
        self._note_state(reply)
        if reply.code == Status.VEND_VALID:
            if self._on_vend_valid(reply):
                exchange.ack()
        else:
            self._on_state(reply)
        return reply

    def _note_state(self, reply: StatusReply) -> None:
        if reply.code != self._state_code:
            self._state_code = reply.code
            self._state_since = time.monotonic()
            self._stuck_reported = False

    def _on_state(self, reply: StatusReply) -> None:
        code, data = reply.code, reply.data
        new_event = self._last_status != (code, data)
        self._last_status = (code, data)
        if not self._stuck_reported:
            self._set_status(abstract_status(code), describe(code, data))
        in_path = self._stacking or (self._escrow.bill if self._escrow else None)
        if code in POWER_UP_STATES:
            self._note_power_up(Status(code), in_path)
            if self._phase is _Phase.RUNNING:
                log.warning("ID-003 unit powered up while running (%s); resetting",
                            describe(code))
                self._reset_needed = True
        elif code in (Status.RETURNING, Status.REJECTING) and in_path is not None:
            # A bill we saw in escrow (or sent STACK for) is going back to the customer:
            # our RETURN, the unit's escrow timeout (0x79), or a failed stack.
            if code == Status.REJECTING:
                log.info("bill in escrow rejected: %s", reject_reason_text(reply.first))
            self._bill_returned(in_path)
        elif code == Status.REJECTING and new_event:
            reason = reject_reason_text(reply.first)
            self._notify("on_rejected", lambda lst: lst.on_rejected(reason))
        elif code == Status.ESCROW:
            self._on_escrow(reply.first)
        elif code == Status.HOLDING:
            self._on_holding()
        elif code == Status.PAUSE and self._phase is not _Phase.INITIALIZING:
            self._reset_needed = True  # §5.7: RESET resolves the pause deadlock
        elif code == Status.INITIALIZE and self._phase is _Phase.RUNNING:
            self._applied_codes = None  # re-initializing on its own: settings may be lost
        if code not in (Status.ESCROW, Status.HOLDING):
            self._escrow = None
        if code in SETTLED_STATES:
            self._stack_sent = False
            if self._stacking is not None and self._powerup is None:
                # Nothing in the path and no VEND VALID for it: it never reached the point
                # of no return (a jam cleared by hand, a failed stack).
                log.warning("%s: STACK was sent, the unit settled without VEND VALID",
                            self._stacking)
                self._stacking = None
                self._marker.close()

    def _bill_returned(self, bill: Bill) -> None:
        self._escrow = None
        if self._stacking is not None:
            self._stacking = None
            self._marker.close()
        self._notify("on_returned", lambda lst: lst.on_returned(bill))

    # -- line thread: the point of no return ---------------------------------------------

    def _vend_bill(self, reply: StatusReply) -> Bill | None:
        """The bill a VEND VALID is for: the unit's escrow code if it sends one [U], else
        the bill we sent STACK for, else the one already reported (a repeat), else the
        one on disk (a repeat after a restart)."""
        code = reply.first
        if code is not None:
            bill = self._bills.get(code)
            if bill is None and self._table_retry_key != f"{self._run_id}:{code}":
                self._table_retry_key = f"{self._run_id}:{code}"  # once per code
                self._read_currency_table()
                bill = self._bills.get(code)
            expected = self._stacking
            if bill is not None and expected is not None and expected != bill:
                log.warning("VEND VALID names %s, STACK was sent for %s; trusting the unit",
                            bill, expected)
            return bill
        current = self._edge.current
        return (
            self._stacking
            or (current.bill if current is not None else None)
            or self._marker.last_bill
        )

    def _on_vend_valid(self, reply: StatusReply) -> bool:
        """Offer the credit; True when the reply may be ACKed (the listener committed it)."""
        self._last_status = (reply.code, reply.data)
        bill = self._vend_bill(reply)
        if bill is None:
            self._set_status(
                AcceptorStatus.FAILURE,
                f"{describe(reply.code, reply.data)} for a bill this driver cannot name; "
                "not acknowledged",
            )
            return False
        if not self._stuck_reported:
            self._set_status(AcceptorStatus.ACCEPTING, describe(reply.code, reply.data))
        return self._credit(bill, recovered=self._recovery_pending or not self._stack_sent)

    def _credit(self, bill: Bill, recovered: bool) -> bool:
        event = self._edge.vend_valid(bill, self._model_token(), recovered)
        try:
            self._require_listener().on_stacked(StackedBill(bill, event.key, event.recovered))
        except Exception:
            log.exception("on_stacked failed for %s; not acknowledging, the unit will repeat",
                          event.key)
            return False
        self._stack_sent = False
        self._stacking = None
        self._escrow = None
        if self._powerup == Status.POWER_UP_BILL_IN_STACKER:
            self._powerup = None  # resolved by the replayed VEND VALID
        self._recovery_pending = False
        self._marker.close()
        return True

    def _note_power_up(self, code: Status, in_path: Bill | None) -> None:
        if self._powerup != code:
            self._powerup = code
            open_bill = self._marker.open_bill if code == Status.POWER_UP_BILL_IN_STACKER else None
            self._powerup_bill = in_path or open_bill
        if code == Status.POWER_UP_BILL_IN_STACKER:
            self._recovery_pending = True
        self._stacking = None

    def _settle_power_up(self) -> None:
        """Resolve a power-up with a bill inside once the unit has settled after RESET."""
        code, bill = self._powerup, self._powerup_bill
        if code is None or self._state_code not in SETTLED_STATES:
            return
        if code == Status.POWER_UP_BILL_IN_ACCEPTOR:
            log.info("power up with bill in acceptor: %s returned by the reset [U]", bill)
            if bill is not None:
                self._notify("on_returned", lambda lst: lst.on_returned(bill))
            self._marker.close()
        elif code == Status.POWER_UP_BILL_IN_STACKER and self._recovery_pending:
            if bill is None:
                log.warning("power up with bill in stacker, but no bill is waiting for its "
                            "outcome (already credited, or unknown: see the frame log)")
            else:
                log.warning("power up with bill in stacker and no VEND VALID after it "
                            "(power recovery off or unsupported): crediting %s as recovered",
                            bill)
                if not self._credit(bill, recovered=True):
                    return  # the listener failed: try again on the next loop
        self._powerup = None
        self._powerup_bill = None
        self._recovery_pending = False

    # -- line thread: escrow -------------------------------------------------------------

    def _on_escrow(self, code: int | None) -> None:
        esc = self._escrow
        if esc is None or esc.code != code:
            bill = self._bills.get(code) if code is not None else None
            esc = self._escrow = _Escrow(code, bill, time.monotonic())
        if esc.decision in (EscrowDecision.STACK, EscrowDecision.RETURN):
            self._send_decision(esc)  # our command was lost: repeat it, do not re-ask
        else:
            self._decide(esc)

    def _on_holding(self) -> None:
        esc = self._escrow
        if esc is None:
            # Holding a bill we never saw in escrow (driver restarted): we cannot credit
            # what we cannot name, so give it back.
            esc = self._escrow = _Escrow(None, None, time.monotonic(), EscrowDecision.HOLD)
        if esc.decision in (EscrowDecision.STACK, EscrowDecision.RETURN):
            self._send_decision(esc)
        else:
            self._decide(esc)

    def _decide(self, esc: _Escrow) -> None:
        decision: EscrowDecision | None = None
        if esc.decision is EscrowDecision.HOLD:
            decision = self._take_engine_action()
        if decision is None:
            if esc.bill is None:
                what = ("a barcode ticket" if esc.code == BARCODE_TICKET
                        else f"escrow code {esc.code!r}, not in the currency table")
                log.warning("%s in escrow; returning", what)
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
        self._send_decision(esc)

    def _ask_escrow(self, bill: Bill) -> EscrowDecision:
        try:
            decision = self._require_listener().on_escrow(bill)
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
                self._send_decision(esc)
            return
        with self._lock:
            stale = list(self._engine_actions)
            self._engine_actions.clear()
        for action in stale:
            log.warning("%s requested but no bill is held in escrow; ignored", action.value)

    def _send_decision(self, esc: _Escrow) -> None:
        decision = esc.decision
        if decision is EscrowDecision.STACK and esc.bill is not None:
            # Before sending: the reply may be lost after the unit took it (M6).
            if self._stacking != esc.bill or not self._stack_sent:
                self._marker.sent(esc.bill)
            self._stacking = esc.bill
            self._stack_sent = True
            self._edge.stack_sent()
            command = self._settings.stack_command
        elif decision is EscrowDecision.HOLD:
            command = Command.HOLD
        else:
            command = Command.RETURN
        reply = self._link_request(command)
        if not isinstance(reply, AckReply):
            log.warning("%s (0x%02X) answered with %r", decision and decision.value, command,
                        reply)

    # -- line thread: timers, status, helpers --------------------------------------------

    def _check_stuck(self) -> None:
        if self._state_code not in TRANSIENT_STATES or self._stuck_reported:
            return
        elapsed = time.monotonic() - self._state_since
        if elapsed > self._timing.stuck_state_s:
            self._stuck_reported = True
            self._set_status(
                AcceptorStatus.JAMMED,
                f"stuck in {describe(*self._last_status) if self._last_status else '?'}"
                f" for {elapsed:.0f} s",
            )

    def _next_poll_delay(self) -> float:
        moving = self._state_code in IN_BILL_PATH
        return self._timing.active_poll_s if moving else self._timing.poll_s

    def _set_status(self, status: AcceptorStatus, detail: str) -> None:
        with self._lock:
            changed = status != self._status or (
                detail != self._detail and status not in _QUIET_DETAIL
            )
            self._status = status
            self._detail = detail
        if changed and self._listener is not None:
            log.info("ID-003 status %s: %s", status.value, detail)
            self._notify("on_status", lambda lst: lst.on_status(status, detail))

    def _notify(self, what: str, call: Callable[[AcceptorListener], object]) -> None:
        """Listener exceptions are logged, never allowed to end the line thread."""
        try:
            call(self._require_listener())
        except Exception:
            log.exception("listener %s failed", what)

    def _require_listener(self) -> AcceptorListener:
        if self._listener is None:
            raise AcceptorError("ID-003 acceptor used before start()")
        return self._listener

    def _require_link(self) -> Id003Link:
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
        return f"Id003Acceptor({self._port_url!r}, profile={self._profile.name!r})"


def check_id003_profile(profile: Profile) -> Profile:
    if profile.kind != "acceptor" or profile.protocol != PROTOCOL:
        raise ProfileError(
            f"{profile.path}: profile {profile.name!r} is {profile.kind}/{profile.protocol},"
            f" not acceptor/{PROTOCOL}"
        )
    return profile


def _echoed(reply: Reply, command: int, data: bytes) -> bool:
    return isinstance(reply, SettingEcho) and reply.command == command and reply.data == data
