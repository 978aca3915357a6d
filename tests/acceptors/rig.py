"""A whole terminal for either acceptor protocol: the real engine, ledger and driver.

`Rig(tmp, kit)` puts together what `kiosk run` puts together, minus the local API:
- the protocol's simulator on a real pseudo-terminal (fast device timing);
- the real driver, built by the protocol's production factory (`build_ccnet_acceptor`,
  `build_id003_acceptor`) on a fast test profile, frame log and state files in the
  configured folders;
- the real PaymentEngine and Ledger (a SQLite file under tmp), a DoublePrinter;
- a ticker thread standing in for the daemon's 100 ms `tick()` (real monotonic clock).

Everything protocol-specific lives in a `ProtocolKit` (how to build the simulator and the
driver, what its event lines say, how to read its unit's state), so one story can be
told to both protocols and must end in the same ledger. Waits are condition waits with
timeouts. Ledger facts are read through a separate read-only SQLite connection (WAL: it
sees exactly what was committed).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from drivers.acceptor import AcceptorStatus, BillAcceptor
from drivers.ccnet.factory import build_ccnet_acceptor
from drivers.ccnet.states import PollState
from drivers.id003.factory import build_id003_acceptor
from drivers.id003.states import Status
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import PowerCycle as CcnetPowerCycle
from drivers.sim.ccnet_model import SimTiming as CcnetSimTiming
from drivers.sim.id003 import Id003Simulator
from drivers.sim.id003_model import PowerCycle as Id003PowerCycle
from drivers.sim.id003_model import SimTiming as Id003SimTiming
from kiosk.config import Config
from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger
from kiosk.screens import Screen
from tests.conftest import config_in
from tests.core.doubles import DoublePrinter

WAIT_S = 5.0
TICK_S = 0.1
"""The daemon ticks the engine every 100 ms (docs/architecture.md, "Threads in the core")."""
MTS_ACCOUNT = "9161234567"
RUB = 100

_TIMING = """
[timing]
poll_ms = 20
active_poll_ms = 10
response_timeout_ms = 150
ident_timeout_ms = 300
attempts = 3
command_gap_ms = 0
bad_frame_settle_ms = 10
reset_wait_ms = 10
reset_poll_ms = 10
init_timeout_s = 3.0
stuck_state_s = 2.0
escrow_hold_max_s = 1.5
reconnect_ms = 50
"""
CCNET_PROFILE = """
[profile]
name = "same_story_ccnet"
kind = "acceptor"
protocol = "ccnet"
[serial]
baudrate = 9600
bytesize = 8
parity = "none"
stopbits = 1
[identify]
patterns = ["^SM-"]
""" + _TIMING
ID003_PROFILE = """
[profile]
name = "same_story_id003"
kind = "acceptor"
protocol = "id003"
[serial]
baudrate = 9600
bytesize = 8
parity = "even"
stopbits = 1
[identify]
patterns = ["^U\\\\("]
[id003]
stack = 2
power_recovery = true
""" + _TIMING


def wait_until(condition: Callable[[], object], timeout_s: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")
        time.sleep(0.005)


class Simulator(Protocol):
    """What the two simulators have in common (drivers/sim/ccnet.py, drivers/sim/id003.py)."""

    @property
    def path(self) -> str: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...

    def command(self, line: str) -> str: ...

    def with_model(self, action: Callable[[Any], Any]) -> Any: ...

    def mark(self) -> int: ...

    def wait_for(self, text: str, timeout_s: float = ..., since: int = ...) -> str: ...

    def when(self, text: str, command_line: str) -> None: ...

    @property
    def events(self) -> list[str]: ...


@dataclass(frozen=True)
class ProtocolKit:
    """One protocol's simulator, driver and vocabulary, for protocol-neutral stories."""

    name: str
    profile_text: str
    make_sim: Callable[[Path, bool, Callable[[str], None]], Simulator]
    build: Callable[[str, str, Path, Path], BillAcceptor]
    credit_report: str  # the event line of the unit's credit report (point of no return)
    acked: str  # the event line of the host's ACK of the credit report
    idle_disabled: Callable[[Any], bool]
    taking: Callable[[Any, int | None], bool]  # idling, enabled (for this bill), nothing due
    enabled_values: Callable[[Any], set[int]]
    stacking: Callable[[Any], bool]
    power_cut_in_stacker: Callable[[Any], str]
    cassette: Callable[[Any], dict[int, int]]  # minor units -> count, the unit's own counter


def _ccnet_sim(link: Path, slow_stack: bool, echo: Callable[[str], None]) -> Simulator:
    timing = CcnetSimTiming(init_s=0.05, accept_s=0.03, stack_s=0.25 if slow_stack else 0.03,
                            return_s=0.03, reject_s=0.05)
    return CcnetSimulator(link=link, timing=timing, echo=echo)


def _id003_sim(link: Path, slow_stack: bool, echo: Callable[[str], None]) -> Simulator:
    timing = Id003SimTiming(init_s=0.05, accept_s=0.03, stack_s=0.25 if slow_stack else 0.03,
                            stacked_s=0.02, return_s=0.03, reject_s=0.05)
    return Id003Simulator(link=link, timing=timing, echo=echo)


def _ccnet_taking(m: Any, rubles: int | None) -> bool:
    if m.base != PollState.IDLING or m.event is not None or m.fault is not None:
        return False
    return bool(m.enabled) if rubles is None else any(m.value_of(t) == rubles for t in m.enabled)


def _id003_taking(m: Any, rubles: int | None) -> bool:
    if m.base != Status.ENABLE or m.fault is not None:
        return False
    return bool(m.enabled) if rubles is None else any(m.value_of(c) == rubles for c in m.enabled)


CCNET = ProtocolKit(
    name="ccnet",
    profile_text=CCNET_PROFILE,
    make_sim=_ccnet_sim,
    build=lambda port, profile, logs, data: build_ccnet_acceptor(port, profile, logs,
                                                                 state_dir=data),
    credit_report="stacked",
    acked="host acked 0x81",
    idle_disabled=lambda m: m.base == PollState.UNIT_DISABLED and m.event is None,
    taking=_ccnet_taking,
    enabled_values=lambda m: {m.value_of(t) for t in m.enabled},
    stacking=lambda m: m.base == PollState.STACKING,
    power_cut_in_stacker=lambda m: m.power_cycle(CcnetPowerCycle.STACKER),
    cassette=lambda m: {m.value_of(t) * RUB: n for t, n in m.counters.stacked_by_type.items()
                        if n},
)
ID003 = ProtocolKit(
    name="id003",
    profile_text=ID003_PROFILE,
    make_sim=_id003_sim,
    build=lambda port, profile, logs, data: build_id003_acceptor(port, profile, logs,
                                                                 state_dir=data),
    credit_report="vend valid",
    acked="host acked 0x15",
    idle_disabled=lambda m: m.base == Status.DISABLE,
    taking=_id003_taking,
    enabled_values=lambda m: {m.value_of(c) for c in m.enabled},
    stacking=lambda m: m.base == Status.STACKING,
    power_cut_in_stacker=lambda m: m.power_cycle(Id003PowerCycle.STACKER),
    cassette=lambda m: {m.value_of(c) * RUB: n for c, n in m.counters.stacked_by_code.items()
                        if n},
)
KITS = {kit.name: kit for kit in (CCNET, ID003)}


class SimHooks:
    """Python callbacks on simulator event lines (the simulators' `echo`). A hook runs in
    the simulator thread with its lock held, before the reply that follows; once each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[tuple[str, Callable[[str], None]]] = []
        self.errors: list[BaseException] = []

    def on(self, text: str, action: Callable[[str], None]) -> None:
        with self._lock:
            self._hooks.append((text, action))

    def __call__(self, line: str) -> None:
        with self._lock:
            fired = [h for h in self._hooks if h[0] in line]
            for hook in fired:
                self._hooks.remove(hook)
        for _text, action in fired:
            try:
                action(line)
            except BaseException as exc:  # surfaced by Rig.close, not lost in a thread
                self.errors.append(exc)


class Ticker(threading.Thread):
    """The daemon's periodic `engine.tick()` (timeouts, start-up reconciliation)."""

    def __init__(self, engine: PaymentEngine) -> None:
        super().__init__(name="test-ticker", daemon=True)
        self.engine = engine
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.halt.wait(TICK_S):
            try:
                self.engine.tick()
            except BaseException as exc:
                self.error = exc
                return


class Rig:
    def __init__(self, tmp: Path, kit: ProtocolKit, *, slow_stack: bool = False) -> None:
        base = config_in(tmp)
        self.config: Config = dataclasses.replace(
            base, timeouts=dataclasses.replace(base.timeouts, escrow_settle=1)
        )
        self.kit = kit
        self.profile_path = tmp / f"{kit.name}-fast.toml"
        self.profile_path.write_text(kit.profile_text, encoding="utf-8")
        self.hooks = SimHooks()
        self.sim = kit.make_sim(tmp / f"tty{kit.name.upper()}", slow_stack, self.hooks)
        self.sim.start()
        paths = self.config.paths
        self.ledger = Ledger(paths.ledger, self.config.terminal.id, run_id="core1")
        self.ledger.open()
        self.acceptor = kit.build(self.sim.path, str(self.profile_path), paths.log_dir,
                                  paths.data_dir)
        self.printer = DoublePrinter()
        self.engine = PaymentEngine(self.config, self.ledger, self.acceptor, self.printer)
        self.ticker = Ticker(self.engine)
        self.engine.start()
        self.ticker.start()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.ticker.halt.set()
            self.ticker.join(5)
            self.engine.stop()
            self.ledger.close()
        finally:
            self.sim.stop()
        if self.ticker.error is not None:
            raise self.ticker.error
        if self.hooks.errors:
            raise self.hooks.errors[0]

    # -- the unit ------------------------------------------------------------------------

    def model(self, read: Callable[[Any], Any]) -> Any:
        """Read the simulated unit's state under its lock."""
        return self.sim.with_model(read)

    def wait_in_service(self) -> None:
        """Start-up done: reconciled, idle screen, unit initialised and disabled (M4)."""
        wait_until(
            lambda: self.engine.reconciled and self.engine.screen is Screen.IDLE
            and self.model(self.kit.idle_disabled),
            what="the terminal to be idle with the unit disabled",
        )

    def wait_taking_bills(self, rubles: int | None = None) -> None:
        wait_until(lambda: self.model(lambda m: self.kit.taking(m, rubles)),
                   what=f"the unit to take bills ({rubles})")

    def wait_disabled(self) -> None:
        """M4: the unit itself takes no bill."""
        wait_until(lambda: self.model(lambda m: not self.kit.enabled_values(m)),
                   what="the unit disabled")

    def wait_status(self, status: AcceptorStatus, what: str = "") -> None:
        wait_until(lambda: self.engine.acceptor_status is status,
                   what=what or f"acceptor status {status.value}")

    def wait_polls(self, count: int = 5) -> None:
        """Let the driver poll `count` more times (a condition, not a sleep): whatever was
        going to be credited twice would have been by then."""
        start = self.model(lambda m: m.counters.polls)
        wait_until(lambda: self.model(lambda m: m.counters.polls) >= start + count,
                   what=f"{count} more polls")

    # -- the customer --------------------------------------------------------------------

    def intent(self, name: str, **args: Any) -> Any:
        return self.engine.intent(name, args)

    def screen(self) -> str:
        return self.engine.snapshot()["screen"]

    def inserted(self) -> int:
        session = self.engine.snapshot()["session"]
        return session["inserted_minor"] if session else 0

    def notice(self) -> str | None:
        notice = self.engine.snapshot()["notice"]
        return notice["code"] if notice else None

    def to_cash(self, provider: str = "mts", account: str = MTS_ACCOUNT) -> None:
        self.intent("select_provider", provider_id=provider)
        self.intent("submit_account", account=account)
        self.intent("confirm_account")
        assert self.screen() == "cash"
        self.wait_taking_bills()

    def insert(self, rubles: int) -> int:
        """The customer inserts a bill; returns the simulator's event mark before it."""
        mark = self.sim.mark()
        answer = self.sim.command(f"insert {rubles}")
        assert answer == "ok", answer
        return mark

    def insert_credited(self, rubles: int) -> None:
        """Insert a bill and wait until it is credited, its report acknowledged and the
        unit back to idle (ID-003 passes through STACKED after the ACK; a bill inserted
        then would be a second bill in the path)."""
        self.wait_taking_bills(rubles)
        before = self.inserted()
        mark = self.insert(rubles)
        wait_until(lambda: self.inserted() == before + rubles * RUB, what=f"credit of {rubles}")
        self.sim.wait_for(self.kit.acked, since=mark)
        if self.screen() == "cash":
            self.wait_taking_bills()

    def pay(self) -> str:
        """Customer presses pay; returns the payment id once the receipt is printed."""
        self.intent("pay")
        wait_until(lambda: self.screen() == "receipt", what="receipt screen")
        self.drain_printer()
        last = self.engine.snapshot()["last_payment"]
        assert last is not None
        return last["payment_id"]

    def drain_printer(self) -> None:
        self.engine._printer_pool.submit(lambda: None).result(timeout=WAIT_S)

    def events_since(self, mark: int) -> list[str]:
        events = self.sim.events
        first = self.sim.mark() - len(events)
        return events[max(0, mark - first):]

    # -- what the ledger holds -----------------------------------------------------------

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        uri = f"file:{self.config.paths.ledger}?mode=ro"
        with sqlite3.connect(uri, uri=True) as db:
            return [tuple(r) for r in db.execute(sql, params)]

    def payments(self) -> list[tuple[Any, ...]]:
        """(id, kind, inserted_minor, status, note) per payment or unclaimed record."""
        return self.rows(
            "SELECT id, kind, inserted_minor, status, note FROM payments ORDER BY number")

    def stacked_bills(self) -> list[tuple[Any, ...]]:
        """(amount_minor, session_id, payment_id, recovered) per stacked bill, in order."""
        return self.rows("SELECT amount_minor, session_id, payment_id, recovered "
                         "FROM stacked_bills ORDER BY id")

    def cassette(self) -> dict[int, int]:
        return dict(self.rows("SELECT amount_minor, count FROM cassette WHERE count > 0"))

    def event_kinds(self) -> list[str]:
        return [e["kind"] for e in reversed(self.ledger.recent_events(200))]

    def outcome(self) -> dict[str, Any]:
        """The story's ledger outcome, free of ids and protocol words, to compare across
        protocols: payments (kind, amount, status, note), stacked bills (amount, recovered,
        index of the payment holding it), cassette counters, incident kinds."""
        payments = self.payments()
        index = {p[0]: i for i, p in enumerate(payments)}
        return {
            "payments": [(kind, amount, status, note) for _id, kind, amount, status, note
                         in payments],
            "bills": [(amount, bool(recovered), index.get(pid))
                      for amount, _sid, pid, recovered in self.stacked_bills()],
            "cassette": self.cassette(),
            "events": self.event_kinds(),
        }

    def assert_money_consistent(self) -> None:
        """M2/M6/M7: every bill in the cassette is in the ledger once, in exactly one
        payment or record (or its still-collecting session), and the ledger's cassette
        equals both the stacked-bill rows and the unit's own counter."""
        bills = self.stacked_bills()
        derived: dict[int, int] = {}
        for amount, *_ in bills:
            derived[amount] = derived.get(amount, 0) + 1
        unit = self.model(self.kit.cassette)
        assert self.cassette() == derived == unit, (self.cassette(), derived, unit)
        for amount, session_id, payment_id, _recovered in bills:
            assert payment_id is not None or session_id is not None, f"orphan bill {amount}"
        totals = self.rows(
            "SELECT p.id, p.inserted_minor, SUM(b.amount_minor) FROM payments p "
            "JOIN stacked_bills b ON b.payment_id = p.id GROUP BY p.id")
        for pid, inserted, summed in totals:
            assert inserted == summed, f"payment {pid}: {inserted} != bills {summed}"
