"""A whole terminal for scenario tests: real engine, real ledger, real CCNET driver.

`Rig` puts together what `kiosk run` puts together, minus the local API:
- the CcnetSimulator on a real pseudo-terminal (fast device timing);
- the real CcnetAcceptor, built with the production factory's settings (frame log and
  bill-table cache in the configured folders) on a fast test profile;
- the real PaymentEngine and Ledger (a SQLite file under tmp_path), a DoublePrinter;
- a ticker thread standing in for the daemon's 100 ms `tick()` (real monotonic clock).

A `Core` is one "process" of the agent (ledger + driver + engine + ticker). `Rig.restart`
tears one down and builds a new one on the same ledger file and the same, still running,
simulator: a new Ledger object, a new driver run id, a new engine.

Waits are condition waits with timeouts; nothing sleeps for a fixed time to "let things
happen". Ledger facts are read through a separate read-only SQLite connection (WAL: it
sees exactly what was committed), never through the ledger's own connection, which the
driver thread may be using at the same moment.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.acceptor import AcceptorStatus
from drivers.ccnet.device import CcnetAcceptor
from drivers.ccnet.factory import BILL_TABLE_CACHE_NAME, FRAME_LOG_NAME
from drivers.ccnet.states import PollState
from drivers.profiles import Profile
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import CcnetDeviceModel, SimTiming
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

SIM_TIMING = SimTiming(init_s=0.05, accept_s=0.03, stack_s=0.03, return_s=0.03, reject_s=0.05)
"""Fast device: a bill goes from `insert` to stacked in about 0.1 s."""
SLOW_STACK = dataclasses.replace(SIM_TIMING, stack_s=0.25)
"""A stacker slow enough that a test can act while a bill is in it."""


def wait_until(condition: Callable[[], object], timeout_s: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")
        time.sleep(0.005)


class SimHooks:
    """Python callbacks on simulator event lines (`CcnetSimulator(echo=...)`).

    A hook runs in the simulator thread, with the simulator's lock held, before the reply
    that follows the event is sent: `on("stacking 500", f)` runs `f` after the unit has
    accepted STACK and before the driver sees the ACK. Each hook fires once.
    """

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


@dataclass
class Core:
    """One run of the agent: what a SIGKILL would take away."""

    run_id: str
    ledger: Ledger
    acceptor: CcnetAcceptor
    engine: PaymentEngine
    printer: DoublePrinter
    ticker: Ticker
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False

    def stop(self) -> None:
        """A clean shutdown (as the daemon does it): the engine sees the driver go offline."""
        if self.stopped:
            return
        self.stopped = True
        self.ticker.halt.set()
        self.ticker.join(5)
        self.engine.stop()  # the driver's line thread ends, the printer pool drains
        self.ledger.close()
        if self.ticker.error is not None:
            raise self.ticker.error

    def kill(self) -> None:
        """Like SIGKILL for the engine: from now on it reacts to nothing and writes nothing.
        The driver's line thread is still stopped (one owner per port); on its way out it
        disables the unit, which a killed process would not do - the unit keeps its
        unacknowledged report either way."""
        if self.stopped:
            return
        self.ticker.halt.set()
        self.ticker.join(5)

        def dead(*_args: object) -> Any:
            raise RuntimeError(f"core {self.run_id} is dead")

        for name in ("on_escrow", "on_stacked", "on_returned", "on_rejected", "on_status"):
            setattr(self.engine, name, dead)
        self.stop()


class WideMaskAcceptor(CcnetAcceptor):
    """A unit that accepts every bill whenever it is enabled at all: the engine's narrowed
    mask does not reach it in time (or the model ignores masks, desionlab#6). The escrow
    decision is then the only guard of the provider's maximum (M3)."""

    def enable(self, amounts_minor: Iterable[int]) -> None:  # type: ignore[override]
        amounts = frozenset(amounts_minor)
        if amounts:
            amounts = frozenset(b.amount_minor for b in self.info.bill_table)
        super().enable(amounts)


class Rig:
    def __init__(
        self,
        tmp: Path,
        profile: Profile,
        *,
        sim_timing: SimTiming = SIM_TIMING,
        escrow_settle_s: int = 1,
        acceptor_cls: type[CcnetAcceptor] = CcnetAcceptor,
    ) -> None:
        base = config_in(tmp)
        self.config: Config = dataclasses.replace(
            base, timeouts=dataclasses.replace(base.timeouts, escrow_settle=escrow_settle_s)
        )
        self.profile = profile
        self.acceptor_cls = acceptor_cls
        self.hooks = SimHooks()
        self.sim = CcnetSimulator(link=tmp / "ttyCCNET", timing=sim_timing, echo=self.hooks)
        self.sim.start()
        self.cores: list[Core] = []
        try:
            self.core = self.start_core("core1")
        except BaseException:
            self.sim.stop()
            raise

    # -- lifecycle -----------------------------------------------------------------------

    def start_core(self, run_id: str, prepare: Callable[[Core], None] | None = None) -> Core:
        """`prepare(core)` runs after the objects are built and before anything starts."""
        paths = self.config.paths
        ledger = Ledger(paths.ledger, self.config.terminal.id, run_id=run_id)
        ledger.open()
        acceptor = self.acceptor_cls(
            self.sim.path,
            self.profile,
            frame_log_path=paths.log_dir / FRAME_LOG_NAME,
            bill_table_cache=paths.data_dir / BILL_TABLE_CACHE_NAME,
        )
        printer = DoublePrinter()
        engine = PaymentEngine(self.config, ledger, acceptor, printer)
        core = Core(run_id, ledger, acceptor, engine, printer, Ticker(engine))
        engine.subscribe(core.snapshots.append)
        self.cores.append(core)
        if prepare is not None:
            prepare(core)
        engine.start()
        core.ticker.start()
        return core

    def wait_in_service(self, timeout_s: float = WAIT_S) -> None:
        """Start-up done: reconciled, idle screen, unit initialised and disabled (M4)."""
        wait_until(
            lambda: self.engine.reconciled
            and self.engine.screen is Screen.IDLE
            and self.model(lambda m: m.base == PollState.UNIT_DISABLED and m.event is None),
            timeout_s,
            "the terminal to be idle with the unit disabled",
        )

    def restart(self, run_id: str, prepare: Callable[[Core], None] | None = None) -> Core:
        """The core dies (`Core.kill`) and a new one starts on the same ledger file and the
        same, still running, simulator."""
        self.core.kill()
        self.core = self.start_core(run_id, prepare)
        return self.core

    def close(self) -> None:
        try:
            for core in self.cores:
                core.stop()
        finally:
            self.sim.stop()
        if self.hooks.errors:
            raise self.hooks.errors[0]

    # -- shortcuts -----------------------------------------------------------------------

    @property
    def engine(self) -> PaymentEngine:
        return self.core.engine

    @property
    def ledger(self) -> Ledger:
        return self.core.ledger

    def model(self, read: Callable[[CcnetDeviceModel], Any]) -> Any:
        """Read the simulated unit's state under its lock."""
        return self.sim.with_model(read)

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

    def wait_taking_bills(self, rubles: int | None = None) -> None:
        """The unit idles with bills enabled (and this one, if given) and nothing pending."""

        def ready(m: CcnetDeviceModel) -> bool:
            if m.base != PollState.IDLING or m.event is not None or m.fault is not None:
                return False
            if rubles is None:
                return bool(m.enabled)
            return any(m.value_of(t) == rubles for t in m.enabled)

        wait_until(lambda: self.model(ready), what=f"the unit to take bills ({rubles})")

    def insert(self, rubles: int) -> int:
        """The customer inserts a bill; returns the simulator's event mark before it."""
        mark = self.sim.mark()
        answer = self.sim.command(f"insert {rubles}")
        assert answer == "ok", answer
        return mark

    def insert_credited(self, rubles: int) -> None:
        """Insert a bill and wait until it is credited and its report acknowledged."""
        self.wait_taking_bills(rubles)
        before = self.inserted()
        mark = self.insert(rubles)
        wait_until(lambda: self.inserted() == before + rubles * RUB, what=f"credit of {rubles}")
        self.sim.wait_for("host acked 0x81", since=mark)

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

    def wait_status(self, status: AcceptorStatus, what: str = "") -> None:
        wait_until(lambda: self.engine.acceptor_status is status,
                   what=what or f"acceptor status {status.value}")

    def wait_disabled(self) -> None:
        """M4: the unit itself has an empty enable mask."""
        wait_until(lambda: self.model(lambda m: not m.enabled), what="the unit disabled")

    def set_query_only(self, on: bool) -> None:
        """Make the ledger's own SQLite connection refuse writes (or accept them again)."""
        ledger = self.ledger
        with ledger._lock:  # never in the middle of a transaction of another thread
            raw = ledger.engine.raw_connection()
            try:
                raw.driver_connection.execute(f"PRAGMA query_only={'ON' if on else 'OFF'}")
            finally:
                raw.close()

    # -- what the ledger holds -----------------------------------------------------------

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        uri = f"file:{self.config.paths.ledger}?mode=ro"
        with sqlite3.connect(uri, uri=True) as db:
            return [tuple(r) for r in db.execute(sql, params)]

    def stacked_bills(self) -> list[tuple[Any, ...]]:
        """(amount_minor, session_id, payment_id, recovered) per stacked bill, in order."""
        return self.rows(
            "SELECT amount_minor, session_id, payment_id, recovered FROM stacked_bills ORDER BY id"
        )

    def payments(self) -> list[tuple[Any, ...]]:
        """(id, kind, inserted_minor, status, note) per payment or unclaimed record."""
        return self.rows(
            "SELECT id, kind, inserted_minor, status, note FROM payments ORDER BY number"
        )

    def cassette(self) -> dict[int, int]:
        return dict(self.rows("SELECT amount_minor, count FROM cassette WHERE count > 0"))

    def sim_cassette(self) -> dict[int, int]:
        """The simulated unit's own counters, in the ledger's terms (minor units)."""
        return self.model(
            lambda m: {m.value_of(t) * RUB: n for t, n in m.counters.stacked_by_type.items() if n}
        )

    def events(self, *kinds: str) -> list[dict[str, Any]]:
        """Ledger events, oldest first, optionally only these kinds."""
        found = list(reversed(self.ledger.recent_events(200)))
        return [e for e in found if not kinds or e["kind"] in kinds]

    def event_kinds(self) -> list[str]:
        return [e["kind"] for e in self.events()]

    def assert_money_consistent(self) -> None:
        """M2/M6/M7: every bill in the cassette is in the ledger once, in exactly one
        payment or unclaimed record (or its still-collecting session), and the ledger's
        cassette counters equal both the stacked-bill rows and the unit's own counters."""
        bills = self.stacked_bills()
        derived: dict[int, int] = {}
        for amount, *_ in bills:
            derived[amount] = derived.get(amount, 0) + 1
        assert self.cassette() == derived == self.sim_cassette(), (
            self.cassette(), derived, self.sim_cassette())
        for amount, session_id, payment_id, _recovered in bills:
            assert payment_id is not None or session_id is not None, f"orphan bill {amount}"
        totals = self.rows(
            "SELECT p.id, p.inserted_minor, SUM(b.amount_minor) FROM payments p "
            "JOIN stacked_bills b ON b.payment_id = p.id GROUP BY p.id"
        )
        for pid, inserted, summed in totals:
            assert inserted == summed, f"payment {pid}: {inserted} != bills {summed}"
