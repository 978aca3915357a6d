"""Fixtures for the ID-003 tests: a fast firmware profile, the simulator on a pty, a driver.

Everything runs over a real pseudo-terminal with real ID-003 bytes; only the timing is
shortened (a test profile), so the whole suite stays quick and waits on conditions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision, StackedBill
from drivers.id003.device import Id003Acceptor
from drivers.profiles import Profile, load_profile
from drivers.sim.id003 import Id003Simulator
from drivers.sim.id003_model import SimTiming

FAST_PROFILE = """
[profile]
name = "test_fast_id003"
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
stack = 1
power_recovery = true

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

SIM_TIMING = SimTiming(init_s=0.05, accept_s=0.03, stack_s=0.03, stacked_s=0.02,
                       return_s=0.03, reject_s=0.05)
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


def write_profile(folder: Path, name: str = "test_fast_id003", **replace: str) -> Path:
    """The fast profile under another name, with textual replacements (old → new)."""
    text = FAST_PROFILE.replace('name = "test_fast_id003"', f'name = "{name}"')
    for old, new in replace.items():
        text = text.replace(old, new)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def fast_profile(tmp_path: Path) -> Profile:
    return load_profile(write_profile(tmp_path))


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Id003Simulator]:
    simulator = Id003Simulator(link=tmp_path / "ttyID003", timing=SIM_TIMING)
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
def make_sim(tmp_path: Path) -> Iterator[Callable[..., Id003Simulator]]:
    """Extra simulators with custom timing, table or firmware; stopped at teardown."""
    sims: list[Id003Simulator] = []

    def make(name: str = "ttyEXTRA", **kwargs: object) -> Id003Simulator:
        kwargs.setdefault("timing", SIM_TIMING)
        simulator = Id003Simulator(link=tmp_path / name, **kwargs)  # type: ignore[arg-type]
        sims.append(simulator.start())
        return simulator

    yield make
    for simulator in sims:
        simulator.stop()


@pytest.fixture
def make_acceptor(
    fast_profile: Profile, tmp_path: Path
) -> Iterator[Callable[..., Id003Acceptor]]:
    started: list[Id003Acceptor] = []

    def make(
        sim: Id003Simulator, listener: RecordingListener, ready: bool = True,
        profile: Profile | None = None, **kwargs: object
    ) -> Id003Acceptor:
        kwargs.setdefault("stack_marker", tmp_path / "stack-marker.json")
        acceptor = Id003Acceptor(sim.path, profile or fast_profile, **kwargs)  # type: ignore[arg-type]
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
    sim: Id003Simulator,
    listener: RecordingListener,
    make_acceptor: Callable[..., Id003Acceptor],
) -> Id003Acceptor:
    """A started driver with 10..5000 RUB enabled and the unit idling."""
    acceptor = make_acceptor(sim, listener)
    acceptor.enable(b.amount_minor for b in acceptor.info.bill_table)
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="IDLE after enable")
    return acceptor
