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
happen". The customer's side, the ledger's facts, the ticker and the simulator hooks are
tests/acceptor_terminal.py's, shared with the two-protocol rig (tests/acceptors/rig.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from tests.acceptor_terminal import (
    MTS_ACCOUNT,
    RUB,
    WAIT_S,
    SimHooks,
    TerminalActions,
    Ticker,
    wait_until,
)
from tests.conftest import config_in
from tests.core.doubles import DoublePrinter

__all__ = ["MTS_ACCOUNT", "RUB", "SIM_TIMING", "SLOW_STACK", "WAIT_S", "Core", "Rig",
           "WideMaskAcceptor", "wait_until"]

SIM_TIMING = SimTiming(init_s=0.05, accept_s=0.03, stack_s=0.03, return_s=0.03, reject_s=0.05)
"""Fast device: a bill goes from `insert` to stacked in about 0.1 s."""
SLOW_STACK = dataclasses.replace(SIM_TIMING, stack_s=0.25)
"""A stacker slow enough that a test can act while a bill is in it."""


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


class Rig(TerminalActions):
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

    def wait_taking_bills(self, rubles: int | None = None) -> None:
        """The unit idles with bills enabled (and this one, if given) and nothing pending."""

        def ready(m: CcnetDeviceModel) -> bool:
            if m.base != PollState.IDLING or m.event is not None or m.fault is not None:
                return False
            if rubles is None:
                return bool(m.enabled)
            return any(m.value_of(t) == rubles for t in m.enabled)

        wait_until(lambda: self.model(ready), what=f"the unit to take bills ({rubles})")

    def insert_credited(self, rubles: int) -> None:
        """Insert a bill and wait until it is credited and its report acknowledged."""
        self.wait_taking_bills(rubles)
        before = self.inserted()
        mark = self.insert(rubles)
        wait_until(lambda: self.inserted() == before + rubles * RUB, what=f"credit of {rubles}")
        self.sim.wait_for("host acked 0x81", since=mark)

    def wait_disabled(self) -> None:
        """M4: the unit itself has an empty enable mask."""
        wait_until(lambda: self.model(lambda m: not m.enabled), what="the unit disabled")

    def set_query_only(self, on: bool) -> None:
        """Make the ledger's own SQLite connection refuse writes (or accept them again)."""
        # Ledger.pragma: never in the middle of a transaction of another thread.
        self.ledger.pragma("query_only", "ON" if on else "OFF")

    # -- what the ledger holds -----------------------------------------------------------

    def sim_cassette(self) -> dict[int, int]:
        """The simulated unit's own counters, in the ledger's terms (minor units)."""
        return self.model(
            lambda m: {m.value_of(t) * RUB: n for t, n in m.counters.stacked_by_type.items() if n}
        )

    def unit_cassette(self) -> dict[int, int]:
        return self.sim_cassette()

    def events(self, *kinds: str) -> list[dict[str, Any]]:
        """Ledger events, oldest first, optionally only these kinds."""
        found = list(reversed(self.ledger.recent_events(200)))
        return [e for e in found if not kinds or e["kind"] in kinds]
