"""Fixtures and helpers shared by the bill-acceptor suites (tests/ccnet, tests/id003,
tests/acceptors): a fast test profile, the protocol's simulator on a real pty, the real
driver, and a recording stand-in for the engine.

A suite's conftest says which protocol it tests with an `AcceptorKit` returned by its
`kit` fixture and imports the fixtures it wants from here; everything else is the same
for both protocols. Only timing is shortened (a test profile), so the suites stay quick
and wait on conditions, never on fixed sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers.acceptor import AcceptorStatus, Bill, EscrowDecision, StackedBill
from drivers.profiles import DEFAULT_DIR, Profile, load_profile, load_profiles

__all__ = ["fast_profile", "listener", "make_acceptor", "make_sim", "profiles", "running",
           "sim", "wait_until_fixture"]
"""The fixtures, for `from tests.acceptor_fixtures import *` in a protocol's conftest;
helpers are imported by name."""

WAIT_S = 5.0
POLL_STEP_S = 0.005
FAST_STUCK_STATE_S = 0.8


def fast_timing(stuck_state_s: float = FAST_STUCK_STATE_S) -> str:
    """The [timing] section of the fast test profiles: the protocol at pty speed."""
    return f"""
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
stuck_state_s = {stuck_state_s}
escrow_hold_max_s = 1.5
reconnect_ms = 50
"""


def fast_profile_text(name: str, protocol: str, *, parity: str, pattern: str, extra: str = "",
                      stuck_state_s: float = FAST_STUCK_STATE_S) -> str:
    """A fast test profile for a `protocol` unit at 9600 baud whose identification matches
    `pattern`, with `extra` sections (e.g. [id003]) before its [timing]."""
    return f"""
[profile]
name = "{name}"
kind = "acceptor"
protocol = "{protocol}"

[serial]
baudrate = 9600
bytesize = 8
parity = "{parity}"
stopbits = 1

[identify]
patterns = ["{pattern}"]
{extra}""" + fast_timing(stuck_state_s)


def write_profile(folder: Path, text: str, name: str, **replace: str) -> Path:
    """A profile's `text` saved as `<name>.toml`, with textual replacements (old → new)."""
    for old, new in replace.items():
        text = text.replace(old, new)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def wait_until(condition: Callable[[], object], timeout_s: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")
        time.sleep(POLL_STEP_S)


def wait_polls(sim: Any, count: int = 5, what: str = "") -> None:
    """Let the driver poll the unit `count` more times (a condition, not a sleep): what
    was going to happen by the next polls (a second credit, an enable) has happened."""
    start = sim.with_model(lambda m: m.counters.polls)
    wait_until(lambda: sim.with_model(lambda m: m.counters.polls) >= start + count,
               what=what or f"{count} more polls")


def insert_and_wait_credit(sim: Any, listener: RecordingListener,
                           wait: Callable[..., None], rubles: int = 500) -> None:
    """The customer inserts a bill; returns once the listener has committed its credit."""
    before = len(listener.ledger)
    assert sim.command(f"insert {rubles}") == "ok"
    wait(lambda: len(listener.ledger) > before, what=f"credit of {rubles}")


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
            return sum(s.bill.amount_minor for s in self.ledger.values() if s.bill)

    def saw_status(self, status: AcceptorStatus, text: str = "") -> bool:
        with self._lock:
            return any(s == status and text in d for s, d in self.statuses)


@dataclass(frozen=True)
class AcceptorKit:
    """One protocol's pieces for the shared fixtures."""

    simulator: Callable[..., Any]  # CcnetSimulator, Id003Simulator
    tty: str  # the simulator's link name under tmp_path
    sim_timing: Any  # the fast SimTiming of the protocol's model
    acceptor: Callable[..., Any]  # CcnetAcceptor, Id003Acceptor
    profile_text: str
    profile_name: str
    acceptor_defaults: Callable[[Path], dict[str, Any]] = field(default=lambda _tmp: {})
    """Constructor arguments every test driver gets unless the test passes its own."""


# -- fixtures (imported by the protocol conftests) ----------------------------------------


@pytest.fixture
def fast_profile(tmp_path: Path, kit: AcceptorKit) -> Profile:
    return load_profile(write_profile(tmp_path, kit.profile_text, kit.profile_name))


@pytest.fixture
def sim(tmp_path: Path, kit: AcceptorKit) -> Iterator[Any]:
    simulator = kit.simulator(link=tmp_path / kit.tty, timing=kit.sim_timing)
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
def make_sim(tmp_path: Path, kit: AcceptorKit) -> Iterator[Callable[..., Any]]:
    """Extra simulators with custom timing, table or firmware; stopped at teardown."""
    sims: list[Any] = []

    def make(name: str = "ttyEXTRA", **kwargs: object) -> Any:
        kwargs.setdefault("timing", kit.sim_timing)
        simulator = kit.simulator(link=tmp_path / name, **kwargs)
        sims.append(simulator.start())
        return simulator

    yield make
    for simulator in sims:
        simulator.stop()


@pytest.fixture
def make_acceptor(
    fast_profile: Profile, tmp_path: Path, kit: AcceptorKit
) -> Iterator[Callable[..., Any]]:
    started: list[Any] = []

    def make(
        sim: Any, listener: RecordingListener, ready: bool = True,
        profile: Profile | None = None, **kwargs: object
    ) -> Any:
        for key, value in kit.acceptor_defaults(tmp_path).items():
            kwargs.setdefault(key, value)
        acceptor = kit.acceptor(sim.path, profile or fast_profile, **kwargs)
        acceptor.start(listener)
        started.append(acceptor)
        if ready:
            assert acceptor.wait_ready(WAIT_S), "driver did not finish start-up"
        return acceptor

    yield make
    for acceptor in started:
        acceptor.stop()


@pytest.fixture
def running(sim: Any, listener: RecordingListener, make_acceptor: Callable[..., Any]) -> Any:
    """A started driver with 10..5000 RUB enabled and the unit idling."""
    acceptor = make_acceptor(sim, listener)
    acceptor.enable(b.amount_minor for b in acceptor.info.bill_table)
    wait_until(lambda: acceptor.status is AcceptorStatus.IDLE, what="IDLE after enable")
    return acceptor


@pytest.fixture(scope="module")
def profiles() -> dict[str, Profile]:
    """The shipped firmware profiles."""
    return load_profiles(DEFAULT_DIR)
