"""Fixtures for the CCNET tests: a fast firmware profile, the simulator on a pty, a driver.

Everything runs over a real pseudo-terminal with real CCNET bytes; only the timing is
shortened (a test profile), so the whole suite stays quick and waits on conditions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision, StackedBill
from drivers.ccnet.device import CcnetAcceptor
from drivers.profiles import Profile, load_profile
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import SimTiming

FAST_PROFILE = """
[profile]
name = "test_fast_ccnet"
kind = "acceptor"
protocol = "ccnet"

[serial]
baudrate = 9600
bytesize = 8
parity = "none"
stopbits = 1

[identify]
patterns = ["^SM-"]

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
stuck_state_s = 0.8
escrow_hold_max_s = 1.5
reconnect_ms = 50
"""

SIM_TIMING = SimTiming(init_s=0.05, accept_s=0.03, stack_s=0.03, return_s=0.03, reject_s=0.05)
WAIT_S = 5.0


def wait_until(condition: Callable[[], object], timeout_s: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")
        time.sleep(0.005)


class RecordingListener:
    """A stand-in for the engine: decides escrow, 'commits' credits to a dict by key."""

    def __init__(self, decision: EscrowDecision = EscrowDecision.STACK) -> None:
        self.decision = decision
        self.fail_stacked = 0  # the next n on_stacked calls raise (ledger down)
        self.escrows: list[Bill] = []
        self.stacked_calls: list[StackedBill] = []
        self.ledger: dict[str, StackedBill] = {}
        self.returned: list[Bill] = []
        self.rejected: list[str] = []
        self.statuses: list[tuple[AcceptorStatus, str]] = []
        self._lock = threading.Lock()

    def on_escrow(self, bill: Bill) -> EscrowDecision:
        with self._lock:
            self.escrows.append(bill)
        return self.decision

    def on_stacked(self, stacked: StackedBill) -> None:
        with self._lock:
            self.stacked_calls.append(stacked)
            if self.fail_stacked > 0:
                self.fail_stacked -= 1
                raise RuntimeError("ledger unavailable")
            self.ledger.setdefault(stacked.event_key, stacked)  # de-duplicate by key (M2)

    def on_returned(self, bill: Bill) -> None:
        with self._lock:
            self.returned.append(bill)

    def on_rejected(self, reason: str) -> None:
        with self._lock:
            self.rejected.append(reason)

    def on_status(self, status: AcceptorStatus, detail: str) -> None:
        with self._lock:
            self.statuses.append((status, detail))

    @property
    def credited_minor(self) -> int:
        with self._lock:
            return sum(s.bill.amount_minor for s in self.ledger.values())

    def saw_status(self, status: AcceptorStatus, text: str = "") -> bool:
        with self._lock:
            return any(s == status and text in d for s, d in self.statuses)


@pytest.fixture
def fast_profile(tmp_path: Path) -> Profile:
    path = tmp_path / "test_fast_ccnet.toml"
    path.write_text(FAST_PROFILE, encoding="utf-8")
    return load_profile(path)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[CcnetSimulator]:
    simulator = CcnetSimulator(link=tmp_path / "ttyCCNET", timing=SIM_TIMING)
    simulator.start()
    yield simulator
    simulator.stop()


@pytest.fixture
def listener() -> RecordingListener:
    return RecordingListener()


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    """The polling wait helper, as a fixture (test modules do not import conftest)."""
    return wait_until


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[Callable[..., CcnetSimulator]]:
    """Extra simulators with custom timing or table; stopped at teardown."""
    sims: list[CcnetSimulator] = []

    def make(name: str = "ttyEXTRA", **kwargs: object) -> CcnetSimulator:
        kwargs.setdefault("timing", SIM_TIMING)
        simulator = CcnetSimulator(link=tmp_path / name, **kwargs)  # type: ignore[arg-type]
        sims.append(simulator.start())
        return simulator

    yield make
    for simulator in sims:
        simulator.stop()


@pytest.fixture
def make_acceptor(
    fast_profile: Profile,
) -> Iterator[Callable[..., CcnetAcceptor]]:
    started: list[CcnetAcceptor] = []

    def make(
        sim: CcnetSimulator, listener: RecordingListener, ready: bool = True, **kwargs: object
    ) -> CcnetAcceptor:
        acceptor = CcnetAcceptor(sim.path, fast_profile, **kwargs)  # type: ignore[arg-type]
        acceptor.start(listener)
        started.append(acceptor)
        if ready:
            assert acceptor.wait_ready(WAIT_S), "driver did not finish start-up"
        return acceptor

    yield make
    for acceptor in started:
        acceptor.stop()


@pytest.fixture
def running(
    sim: CcnetSimulator,
    listener: RecordingListener,
    make_acceptor: Callable[..., CcnetAcceptor],
) -> CcnetAcceptor:
    """A started driver with 10..5000 RUB enabled and the unit idling."""
    acceptor = make_acceptor(sim, listener)
    acceptor.enable(b.amount_minor for b in acceptor.info.bill_table)
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="IDLE after enable")
    return acceptor
