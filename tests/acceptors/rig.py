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
told to both protocols and must end in the same ledger. The customer's side, the
ledger's facts and the ticker are tests/acceptor_terminal.py's, shared with the CCNET
scenario rig (tests/ccnet/terminal.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.acceptor import BillAcceptor
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
from drivers.sim.pty_device import PtyDeviceSimulator
from kiosk.config import Config
from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger
from kiosk.screens import Screen
from tests.acceptor_fixtures import fast_profile_text
from tests.acceptor_terminal import RUB, WAIT_S, SimHooks, TerminalActions, Ticker, wait_until
from tests.conftest import config_in
from tests.core.doubles import DoublePrinter

__all__ = ["CCNET", "ID003", "KITS", "RUB", "WAIT_S", "ProtocolKit", "Rig", "wait_until"]

STUCK_STATE_S = 2.0
"""The stories' stuck-state limit (the driver suites use 0.8 s)."""

CCNET_PROFILE = fast_profile_text("same_story_ccnet", "ccnet", parity="none", pattern="^SM-",
                                  stuck_state_s=STUCK_STATE_S)
ID003_PROFILE = fast_profile_text("same_story_id003", "id003", parity="even", pattern="^U\\\\(",
                                  extra="\n[id003]\nstack = 2\npower_recovery = true\n",
                                  stuck_state_s=STUCK_STATE_S)


Simulator = PtyDeviceSimulator[Any]
"""What the two simulators have in common (drivers/sim/pty_device.py)."""


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


class Rig(TerminalActions):
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

    def wait_polls(self, count: int = 5) -> None:
        """Let the driver poll `count` more times (a condition, not a sleep): whatever was
        going to be credited twice would have been by then."""
        start = self.model(lambda m: m.counters.polls)
        wait_until(lambda: self.model(lambda m: m.counters.polls) >= start + count,
                   what=f"{count} more polls")

    def unit_cassette(self) -> dict[int, int]:
        return self.model(self.kit.cassette)

    # -- the customer --------------------------------------------------------------------

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

    def events_since(self, mark: int) -> list[str]:
        events = self.sim.events
        first = self.sim.mark() - len(events)
        return events[max(0, mark - first):]

    # -- what the ledger holds -----------------------------------------------------------

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
