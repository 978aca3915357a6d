"""Protocol exchanges in virtual time: the real driver and the simulated unit on an
in-memory line (`PtyDeviceSimulator.memory_port`, given to the driver through its
`PortOpener`), sharing one `ManualClock`.

No pty, no serving thread, no real sleeps: time moves only when the driver or the unit
waits, so every protocol timeout keeps its order however slow the machine is. The bytes
are the real protocol's, as on the pty suites.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.acceptor import AcceptorStatus, StackOrigin
from drivers.ccnet.device import CcnetAcceptor
from drivers.clock import ManualClock
from drivers.id003.device import Id003Acceptor
from drivers.profiles import Profile, SerialSettings, load_profile
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.id003 import Id003Simulator
from drivers.sim.id003_model import PowerCycle
from drivers.sim.id003_model import SimTiming as Id003SimTiming
from drivers.sim.pty_device import MemoryPort, PtyDeviceSimulator
from tests.acceptor_fixtures import RecordingListener, write_profile
from tests.acceptors.rig import CCNET_PROFILE, ID003_PROFILE, STUCK_STATE_S

REAL_WAIT_S = 10.0
"""Only a bound on a broken test: nothing here waits on real time to pass."""
RUB = 100


class Line:
    """A driver and a simulated unit on one memory line and one virtual clock."""

    def __init__(self, sim: PtyDeviceSimulator[Any], clock: ManualClock) -> None:
        self.sim = sim
        self.clock = clock
        self.opened: list[MemoryPort] = []
        self.changed = threading.Condition()
        self._acceptors: list[Any] = []

    def opener(self, _url: str, _settings: SerialSettings) -> MemoryPort:
        port = self.sim.memory_port()
        self.opened.append(port)
        return port

    def start(self, acceptor: Any, listener: RecordingListener) -> Any:
        self._acceptors.append(acceptor)
        acceptor.start(listener)
        assert acceptor.wait_ready(REAL_WAIT_S), "driver did not finish start-up"
        return acceptor

    def stop(self) -> None:
        for acceptor in self._acceptors:
            acceptor.stop()


def wait_for(condition: Callable[[], object], what: str) -> None:
    """Wait until the line thread has made `condition` true (it runs flat out in
    virtual time); the real-time bound only ends a broken test."""
    done = threading.Event()
    deadline = threading.Timer(REAL_WAIT_S, done.set)
    deadline.start()
    try:
        while not condition():
            if done.wait(0.001):
                raise AssertionError(f"never happened: {what}")
    finally:
        deadline.cancel()


def events_since(sim: PtyDeviceSimulator[Any], mark: int) -> list[str]:
    events = sim.events
    first = sim.mark() - len(events)
    return events[max(0, mark - first):]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def lines() -> Iterator[list[Line]]:
    made: list[Line] = []
    yield made
    for line in made:
        line.stop()


def profile(tmp_path: Path, text: str, name: str) -> Profile:
    return load_profile(write_profile(tmp_path, text, name))


def ccnet(tmp_path: Path, clock: ManualClock, lines: list[Line], listener: RecordingListener
          ) -> tuple[Line, CcnetAcceptor]:
    line = Line(CcnetSimulator(clock=clock), clock)
    lines.append(line)
    acceptor = CcnetAcceptor("memory://ccnet", profile(tmp_path, CCNET_PROFILE, "vt_ccnet"),
                             opener=line.opener, clock=clock)
    return line, line.start(acceptor, listener)


def test_ccnet_escrow_stack_credit_in_virtual_time(tmp_path: Path, clock: ManualClock,
                                                   lines: list[Line]) -> None:
    """M1, M2: the credit comes only with the stacked report (0x81), and the driver ACKs
    that report only after the listener returned."""
    acks_seen_in_listener: list[bool] = []
    line: Line | None = None

    class Engine(RecordingListener):
        def on_stacked(self, stacked: Any) -> None:
            assert line is not None
            acks_seen_in_listener.append(any("host acked 0x81" in e for e in line.sim.events))
            super().on_stacked(stacked)

    listener = Engine()
    line, acceptor = ccnet(tmp_path, clock, lines, listener)
    started = clock.monotonic()
    acceptor.enable([500 * RUB])
    wait_for(lambda: acceptor.status is AcceptorStatus.IDLE, "IDLE after enable")
    assert line.sim.command("insert 500") == "ok"
    wait_for(lambda: listener.ledger, "the credit")
    wait_for(lambda: any("host acked 0x81" in e for e in line.sim.events), "the ACK")

    assert [b.amount_minor for b in listener.escrows] == [500 * RUB]
    [credit] = listener.ledger.values()
    assert credit.bill is not None and credit.bill.amount_minor == 500 * RUB
    assert credit.origin is StackOrigin.REQUESTED
    assert acks_seen_in_listener == [False]  # M2: not ACKed before on_stacked returned
    assert line.sim.counters.stacked == 1
    assert clock.monotonic() > started  # the protocol's waits ran on the virtual clock


def test_ccnet_nak_and_retransmit_credits_once(tmp_path: Path, clock: ManualClock,
                                               lines: list[Line]) -> None:
    """A credit report damaged on the line is NAKed; the unit retransmits it 50 ms
    later (virtual) and the driver takes the retransmission without polling again."""
    listener = RecordingListener()
    line, acceptor = ccnet(tmp_path, clock, lines, listener)
    sim = line.sim
    assert sim.set_nak_mode("retransmit", 0.05) == "ok"
    acceptor.enable([100 * RUB])
    wait_for(lambda: acceptor.status is AcceptorStatus.IDLE, "IDLE after enable")
    sim.when("stacked 100", "corrupt_crc")  # the very reply that carries the credit
    mark = sim.mark()
    assert sim.command("insert 100") == "ok"
    wait_for(lambda: any("host acked 0x81" in e for e in sim.events), "the ACK")

    acceptor.stop()
    events = events_since(sim, mark)
    assert any("reply CRC corrupted" in e for e in events)
    assert any("host NAK: retransmitting" in e for e in events)
    assert sim.counters.host_naks >= 1
    assert len(listener.ledger) == 1
    assert listener.credited_minor == 100 * RUB
    assert len(listener.stacked_calls) == 1  # one report offered: the retransmission


def test_id003_power_up_with_bill_in_stacker(tmp_path: Path, clock: ManualClock,
                                              lines: list[Line]) -> None:
    """M1, M6: a unit that lost power with a bill in the stacker (0x42) replays its VEND
    VALID; the driver credits it once, origin POWER_UP, and the unit ends inhibited (M4)."""
    sim = Id003Simulator(clock=clock, vend_valid_data=True)
    line = Line(sim, clock)
    lines.append(line)
    sim.with_model(lambda m: m.power_cycle(PowerCycle.STACKER))
    listener = RecordingListener()
    acceptor = Id003Acceptor("memory://id003", profile(tmp_path, ID003_PROFILE, "vt_id003"),
                             opener=line.opener, clock=clock,
                             stack_marker=tmp_path / "marker.json")
    line.start(acceptor, listener)
    wait_for(lambda: listener.ledger and acceptor.status is AcceptorStatus.DISABLED,
             "the power-up credit, then DISABLED")

    [credit] = listener.ledger.values()
    assert credit.origin is StackOrigin.POWER_UP
    assert credit.bill is not None
    assert sim.with_model(lambda m: sum(m.counters.stacked_by_code.values())) == 1
    assert sim.with_model(lambda m: m.value_of(next(iter(m.counters.stacked_by_code))) * RUB
                          ) == credit.bill.amount_minor
    assert not sim.with_model(lambda m: m.enabled)  # M4: nobody asked for bills


class TimedListener(RecordingListener):
    """Notes the virtual time and the unit's POLL count at every status report (taken in
    the line thread, so they are exact)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self._clock = clock
        self.sim: PtyDeviceSimulator[Any] | None = None
        self.timeline: list[tuple[AcceptorStatus, str, float, int]] = []

    def on_status(self, status: AcceptorStatus, detail: str) -> None:
        super().on_status(status, detail)
        polls = self.sim.with_model(lambda m: m.counters.polls) if self.sim else 0
        self.timeline.append((status, detail, self._clock.monotonic(), polls))

    def first(self, status: AcceptorStatus, text: str = "", after: int = -1) -> int:
        return next(i for i, (s, d, _t, _p) in enumerate(self.timeline)
                    if i > after and s is status and text in d)


def test_ccnet_busy_unit_is_left_alone_for_yh_times_100ms(tmp_path: Path, clock: ManualClock,
                                                           lines: list[Line]) -> None:
    """BUSY with YH = 5: the next POLL comes 500 ms later, not at the 20 ms poll rate."""
    listener = TimedListener(clock)
    line, acceptor = ccnet(tmp_path, clock, lines, listener)
    listener.sim = line.sim
    acceptor.enable([500 * RUB])
    wait_for(lambda: acceptor.status is AcceptorStatus.IDLE, "IDLE after enable")
    assert line.sim.command("busy 5") == "ok"
    wait_for(lambda: listener.saw_status(AcceptorStatus.INITIALIZING, "busy for 500 ms"),
             "the busy report")
    busy = listener.first(AcceptorStatus.INITIALIZING, "busy for 500 ms")
    wait_for(lambda: any(s is AcceptorStatus.IDLE for s, *_ in listener.timeline[busy:]),
             "IDLE after busy")
    idle = listener.first(AcceptorStatus.IDLE, after=busy)
    _s, _d, busy_at, busy_polls = listener.timeline[busy]
    _s, _d, idle_at, idle_polls = listener.timeline[idle]
    assert idle_at - busy_at >= 0.5
    assert idle_polls - busy_polls == 1


def test_id003_bill_stuck_in_accepting_is_a_jam_after_the_stuck_time(
        tmp_path: Path, clock: ManualClock, lines: list[Line]) -> None:
    """A unit that stays in ACCEPTING (an hour, virtually) is reported JAMMED once the
    profile's stuck-state time has passed, and nothing is credited (M1)."""
    sim = Id003Simulator(clock=clock, timing=Id003SimTiming(accept_s=3600.0))
    line = Line(sim, clock)
    lines.append(line)
    listener = TimedListener(clock)
    stuck_profile = profile(tmp_path, ID003_PROFILE, "vt_id003_stuck")
    acceptor = Id003Acceptor("memory://id003", stuck_profile, opener=line.opener, clock=clock,
                             stack_marker=tmp_path / "marker.json")
    line.start(acceptor, listener)
    acceptor.enable([500 * RUB])
    wait_for(lambda: acceptor.status is AcceptorStatus.IDLE, "IDLE after enable")
    assert sim.command("insert 500") == "ok"
    # The status attribute changes before the listener hears of it: wait on the listener.
    wait_for(lambda: listener.saw_status(AcceptorStatus.JAMMED, "stuck in"), "the stuck timer")
    accepting = listener.first(AcceptorStatus.ACCEPTING)
    jammed = listener.first(AcceptorStatus.JAMMED, "stuck in", after=accepting)
    stuck_for = listener.timeline[jammed][2] - listener.timeline[accepting][2]
    assert STUCK_STATE_S <= stuck_for < STUCK_STATE_S + 1.0
    assert listener.ledger == {} and listener.escrows == []
