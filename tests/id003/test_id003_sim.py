"""The ID-003 simulator on its own: the device model with a fake clock, and the command
line (`kiosk sim id003`)."""

from __future__ import annotations

import io
import os
import select
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.id003.frame import FrameDecoder, build_frame
from drivers.id003.protocol import COMMUNICATION_MODE_INTERRUPT, Command, ReplyCode
from drivers.id003.replies import Malformed, parse_reply
from drivers.id003.states import Status
from drivers.sim import id003 as sim_cli
from drivers.sim.id003 import COMMANDS, Id003Simulator, parse_bills
from drivers.sim.id003_model import Id003DeviceModel, PowerCycle, SimTiming
from tests.conftest import ManualClock as Clock

pytestmark = pytest.mark.timeout(30)

CLOCK_START = 100.0

ACK = b"\x50"
INVALID = b"\x4b"
STATUS = bytes((Command.STATUS_REQUEST,))
INHIBIT_ON = bytes((Command.INHIBIT, 1))
INHIBIT_OFF = bytes((Command.INHIBIT, 0))
POWER_RECOVERY = bytes((Command.OPTIONAL_FUNCTION, 0x02, 0))


@pytest.fixture
def clock() -> Clock:
    return Clock(CLOCK_START)


@pytest.fixture
def model(clock: Clock) -> Id003DeviceModel:
    events: list[str] = []
    m = Id003DeviceModel(timing=SimTiming(), clock=clock, emit=events.append)
    m.events = events  # type: ignore[attr-defined]
    return m


def status(model: Id003DeviceModel) -> bytes:
    reply = model.handle(STATUS)
    assert reply is not None
    return reply


def boot(model: Id003DeviceModel, clock: Clock, options: bytes = POWER_RECOVERY) -> None:
    assert status(model) == bytes((Status.POWER_UP,))
    assert model.handle(INHIBIT_ON) == INVALID  # settings need a RESET first [U]
    assert model.handle(bytes((Command.RESET,))) == ACK
    assert status(model) == bytes((Status.INITIALIZE,))
    assert model.handle(INHIBIT_ON) == INHIBIT_ON  # echoed while initializing
    assert model.handle(options) == options
    clock.advance(SimTiming().init_s)
    assert status(model) == bytes((Status.DISABLE,))


def insert_to_escrow(model: Id003DeviceModel, clock: Clock, value: int = 500) -> None:
    assert model.handle(INHIBIT_OFF) == INHIBIT_OFF
    assert status(model) == bytes((Status.ENABLE,))
    assert model.insert(value) == "ok"
    assert status(model) == bytes((Status.ACCEPTING,))
    clock.advance(1)


def test_unit_powers_up_inhibited_until_the_host_enables_it(model, clock) -> None:
    """Like a real unit (issue 12): inhibited after power-up and after RESET; the mask
    allows every denomination, so INHIBIT off alone makes it take bills."""
    assert model.inhibited and model.enabled == frozenset()
    assert model.insert(500).startswith("refused")
    assert model.handle(bytes((Command.RESET,))) == ACK
    clock.advance(SimTiming().init_s)
    assert status(model) == bytes((Status.DISABLE,))
    assert model.handle(INHIBIT_OFF) == INHIBIT_OFF
    assert model.enabled == frozenset(range(0x61, 0x69))
    assert status(model) == bytes((Status.ENABLE,))
    model.handle(bytes((Command.RESET,)))
    clock.advance(SimTiming().init_s)
    assert status(model) == bytes((Status.DISABLE,)) and model.inhibited  # RESET: defaults


def test_boot_escrow_stack_vend_valid_repeated_until_ack(model, clock) -> None:
    boot(model, clock)
    insert_to_escrow(model, clock)
    assert status(model) == bytes((Status.ESCROW, 0x64))
    assert model.handle(INHIBIT_ON) == INVALID  # not while a bill moves
    assert model.handle(bytes((Command.STACK_1,))) == ACK
    assert model.handle(bytes((Command.STACK_1,))) == ACK  # retransmit after a lost ACK
    assert status(model) == bytes((Status.STACKING,))
    clock.advance(1)
    assert status(model) == bytes((Status.VEND_VALID,))
    assert model.counters.stacked == 1  # counted at the point of no return
    assert status(model) == bytes((Status.VEND_VALID,))  # no progress until ACK
    assert model.handle(bytes((Command.ACK,))) is None
    assert status(model) == bytes((Status.STACKED,))
    clock.advance(1)
    assert status(model) == bytes((Status.ENABLE,))
    assert model.counters.stacked == 1 and model.counters.stacked_value == 500
    assert "host acked 0x15 vend valid 500 RUB" in model.events


def test_ack_counts_only_right_after_the_vend_valid_report(model, clock) -> None:
    boot(model, clock)
    insert_to_escrow(model, clock)
    status(model)
    model.handle(bytes((Command.STACK_2,)))
    clock.advance(1)
    assert status(model) == bytes((Status.VEND_VALID,))
    model.handle(bytes((Command.VERSION_REQUEST,)))  # another frame in between
    assert model.handle(bytes((Command.ACK,))) is None
    assert status(model) == bytes((Status.VEND_VALID,))  # that ACK did not count
    model.repeat_vend_valid()
    model.handle(bytes((Command.ACK,)))
    assert status(model) == bytes((Status.VEND_VALID,))  # ignored once (lost ACK)
    model.handle(bytes((Command.ACK,)))
    assert status(model) == bytes((Status.STACKED,))


def test_vend_valid_with_escrow_code_on_some_firmware(clock) -> None:
    model = Id003DeviceModel(clock=clock, vend_valid_data=True)
    boot(model, clock)
    insert_to_escrow(model, clock, 100)
    status(model)
    model.handle(bytes((Command.STACK_1,)))
    clock.advance(1)
    assert status(model) == bytes((Status.VEND_VALID, 0x63))


def test_escrow_timeout_rejects_0x79_and_hold_extends(model, clock) -> None:
    boot(model, clock)
    insert_to_escrow(model, clock, 100)
    assert status(model) == bytes((Status.ESCROW, 0x63))
    clock.advance(9)
    assert model.handle(bytes((Command.HOLD,))) == ACK
    clock.advance(9)
    assert status(model) == bytes((Status.HOLDING,))
    clock.advance(1.5)
    assert status(model) == bytes((Status.REJECTING, 0x79))  # no answer to escrow
    clock.advance(1)
    assert status(model) == bytes((Status.ENABLE,))
    assert model.counters.returned == 1 and model.counters.stacked == 0


def test_return_and_denomination_inhibit(model, clock) -> None:
    boot(model, clock)
    insert_to_escrow(model, clock, 100)
    status(model)
    assert model.handle(bytes((Command.RETURN,))) == ACK
    assert status(model) == bytes((Status.RETURNING,))
    clock.advance(1)
    assert status(model) == bytes((Status.ENABLE,))
    assert model.counters.returned == 1
    # 0x63 (100) inhibited in the mask: rejected 0x79
    assert model.handle(bytes((Command.ENABLE_DISABLE, 0x04, 0))) == bytes((0xC0, 0x04, 0))
    assert model.handle(bytes((Command.REQUEST_ENABLE_DISABLE,))) == bytes((0x80, 0x04, 0))
    model.insert(100)
    clock.advance(1)
    assert status(model) == bytes((Status.REJECTING, 0x79))


@pytest.mark.parametrize(("recovery", "expected"), [
    (POWER_RECOVERY, bytes((Status.VEND_VALID,))),
    (bytes((Command.OPTIONAL_FUNCTION, 0, 0)), bytes((Status.DISABLE,))),
])
def test_power_cycle_in_stacker(model, clock, recovery: bytes, expected: bytes) -> None:
    boot(model, clock, recovery)
    insert_to_escrow(model, clock, 1000)
    status(model)
    model.handle(bytes((Command.STACK_1,)))
    model.power_cycle()  # while stacking: past the point of no return
    assert status(model) == bytes((Status.POWER_UP_BILL_IN_STACKER,))
    model.handle(bytes((Command.RESET,)))
    model.handle(INHIBIT_ON)
    clock.advance(1)
    assert status(model) == expected
    assert model.counters.stacked == 1  # in the cassette either way, once


def test_power_cycle_after_ack_replays_vend_valid_without_counting_twice(model, clock) -> None:
    boot(model, clock)
    insert_to_escrow(model, clock, 1000)
    status(model)
    model.handle(bytes((Command.STACK_1,)))
    clock.advance(1)
    status(model)
    model.handle(bytes((Command.ACK,)))
    assert status(model) == bytes((Status.STACKED,))
    model.power_cycle()
    assert status(model) == bytes((Status.POWER_UP_BILL_IN_STACKER,))
    model.handle(bytes((Command.RESET,)))
    clock.advance(1)
    assert status(model) == bytes((Status.VEND_VALID,))  # the worst case for the host
    assert model.counters.stacked == 1


def test_power_cycle_in_acceptor_returns_bill_on_reset(model, clock) -> None:
    boot(model, clock)
    insert_to_escrow(model, clock)
    status(model)
    model.power_cycle(PowerCycle.parse("validator"))
    assert status(model) == bytes((Status.POWER_UP_BILL_IN_ACCEPTOR,))
    model.handle(bytes((Command.RESET,)))
    assert "returned 500 RUB (reset)" in model.events
    clock.advance(1)
    assert status(model) == bytes((Status.DISABLE,))  # defaults after RESET: inhibited
    assert model.counters.stacked == 0


def test_faults_override_and_freeze(model, clock) -> None:
    boot(model, clock)
    model.set_fault(Status.JAM_IN_ACCEPTOR)
    assert status(model) == bytes((Status.JAM_IN_ACCEPTOR,))
    assert model.insert(100).startswith("refused")
    model.handle(bytes((Command.RESET,)))
    clock.advance(1)
    assert status(model) == bytes((Status.JAM_IN_ACCEPTOR,))  # physical: survives RESET
    model.clear()
    model.set_fault(Status.CHEATED)
    model.handle(bytes((Command.RESET,)))
    clock.advance(1)
    assert status(model) == bytes((Status.DISABLE,))  # cheated does not survive RESET
    model.busy(3)
    assert status(model) == bytes((Status.INITIALIZE,))
    clock.advance(0.31)
    assert status(model) == bytes((Status.DISABLE,))


INTERRUPT_MODE = bytes((Command.COMMUNICATION_MODE, COMMUNICATION_MODE_INTERRUPT))
ENQ = bytes((ReplyCode.ENQ,))
MAX_FRAMES = 50


def test_interrupt_mode_sends_enq_when_there_is_news(clock) -> None:
    """Issue 12: in interrupt mode the unit announces every change the host has not read
    with ENQ (id003.md), again while the host does not ask, and never in polled mode."""
    enqs: list[float] = []
    model = Id003DeviceModel(timing=SimTiming(), clock=clock, enq=lambda: enqs.append(clock()))
    boot(model, clock)
    model.tick()
    assert enqs == []  # polled mode: never
    assert model.handle(INTERRUPT_MODE) == INTERRUPT_MODE and model.interrupt_mode
    model.tick()
    assert enqs == []  # nothing new since the last STATUS reply
    assert model.handle(INHIBIT_OFF) == INHIBIT_OFF  # DISABLE → ENABLE: news
    model.tick()
    assert len(enqs) == 1
    model.tick()
    assert len(enqs) == 1  # not on every tick
    clock.advance(SimTiming().enq_repeat_s)
    model.tick()
    assert len(enqs) == 2  # the host did not ask: again
    assert status(model) == bytes((Status.ENABLE,))
    clock.advance(1)
    model.tick()
    assert len(enqs) == 2  # read: quiet
    assert model.insert(500) == "ok"  # ACCEPTING
    model.tick()
    assert len(enqs) == 3 and model.counters.enqs == 3


def test_interrupt_mode_enq_on_the_line_and_a_host_that_waits_for_it(tmp_path: Path) -> None:
    """Over a real pty: a host that only asks after an ENQ (as lamassu does) sees the bill
    reach escrow. Before the fix the simulator never sent ENQ: such a host credited 0 of 5
    notes."""
    sim = Id003Simulator(link=tmp_path / "tty", timing=SimTiming(init_s=0.02, accept_s=0.02))
    sim.start()
    fd = os.open(sim.path, os.O_RDWR | os.O_NOCTTY)
    decoder = FrameDecoder()

    def exchange(payload: bytes) -> bytes:
        """The reply to `payload` (an ENQ may cross our request on the line: skipped)."""
        os.write(fd, build_frame(payload[0], payload[1:]))
        for _ in range(MAX_FRAMES):
            reply = next_frame()
            if reply != ENQ:
                return reply
        raise AssertionError("no reply among the ENQs")

    frames: list[bytes] = []  # decoded, not yet taken (ENQ and a reply may come together)

    def next_frame(timeout_s: float = 2.0) -> bytes:
        deadline = time.monotonic() + timeout_s
        while not frames and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                frames.extend(bytes(f.payload) for f in decoder.feed(os.read(fd, 256)))
        if not frames:
            raise TimeoutError("no frame from the simulator")
        return frames.pop(0)

    try:
        assert exchange(bytes((Command.RESET,))) == ACK
        assert exchange(INTERRUPT_MODE) == INTERRUPT_MODE
        assert exchange(INHIBIT_OFF) == INHIBIT_OFF

        def statuses_until(code: int) -> list[int]:
            """Ask only after an ENQ, as such a host does, until the unit reports `code`."""
            seen: list[int] = []
            while code not in seen and len(seen) < MAX_FRAMES:
                assert next_frame() == ENQ  # unasked: the unit has news
                seen.append(exchange(STATUS)[0])
            return seen

        assert Status.ENABLE in statuses_until(Status.ENABLE)
        assert sim.command("insert 500") == "ok"
        assert Status.ESCROW in statuses_until(Status.ESCROW)
        assert sim.counters.enqs >= 2  # (initialized, accepting, escrow: each announced)
        assert any("ENQ (interrupt mode): 0x13 escrow" in e for e in sim.events)
    finally:
        os.close(fd)
        sim.stop()


def test_requests_and_unknown_commands(model) -> None:
    version = model.handle(bytes((Command.VERSION_REQUEST,)))
    assert version == b"\x88" + model.version.encode()
    assert model.handle(bytes((Command.BOOT_VERSION_REQUEST,))) == b"\x89B05 "
    table = model.handle(bytes((Command.CURRENCY_ASSIGN_REQUEST,)))
    assert table is not None and len(table) == 1 + 8 * 4
    assert model.handle(b"\x33") == INVALID
    assert model.handle(bytes((Command.RESET, 0))) == INVALID  # operation with data


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.binary(min_size=1, max_size=12), max_size=20))
def test_the_simulated_unit_answers_any_frame_with_a_parsable_reply(frames) -> None:
    model = Id003DeviceModel()
    for payload in frames:
        reply = model.handle(payload)
        if reply is not None:
            assert not isinstance(parse_reply(payload[0], reply), Malformed), (payload, reply)


def test_parse_bills() -> None:
    records = parse_bills("10,50,-,100", "RUB")
    assert [(r.escrow_code, r.value, r.country) for r in records] == [
        (0x61, 10, 39), (0x62, 50, 39), (0x64, 100, 39)]
    assert [r.escrow_code for r in parse_bills("0x62=10,0x68=5000", "KZT")] == [0x62, 0x68]


@pytest.mark.parametrize(("text", "currency"), [("10,257", "RUB"), ("0x70=10", "RUB"),
                                                ("10", "XYZ"), ("1,2,3,4,5,6,7,8,9", "RUB")])
def test_parse_bills_errors(text: str, currency: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_bills(text, currency)


def test_control_language_errors(tmp_path: Path) -> None:
    sim = Id003Simulator(link=tmp_path / "tty")
    assert sim.command("frobnicate").startswith("error: unknown command")
    assert sim.command("insert").startswith("error: usage")
    assert sim.command("reject nonsense").startswith("error: unknown reject reason")
    assert sim.command("power_cycle sideways").startswith("error: usage")
    assert sim.command("jam sideways").startswith("error: usage")
    assert sim.command("busy 999").startswith("error: busy")
    assert sim.command("failure 0x1FF").startswith("error: failure code")
    assert sim.command("# a comment") == ""
    assert "state 0x40 power up" in sim.command("status")
    assert sim.command("jam stacker") == "ok"
    assert "0x46 jam in stacker" in sim.command("status")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sim_cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("insert", "reject", "jam", "cassette_full", "cassette_out", "cassette_in",
                 "cheated", "pause", "failure", "busy", "power_cycle", "corrupt_crc",
                 "drop_reply", "garbage", "repeat_vend_valid", "repeat_stacked", "clear",
                 "unplug", "replug", "status", "quit"):
        assert f"  {name}" in out
    assert {c.name for c in COMMANDS} <= set(out.split())
    for option in ("--link", "--bills", "--currency", "--version-string",
                   "--no-power-recovery", "--vend-valid-data", "--exit-on-eof"):
        assert option in out


def test_main_reads_commands_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "ttyCLI"
    monkeypatch.setattr("sys.stdin", io.StringIO("status\ncassette_full\nstatus\nquit\n"))
    assert sim_cli.main(["--link", str(link), "--version-string", "i(RUS)100-SS ID003-05V1",
                         "--bills", "10,50"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("power up")
    assert any("i(RUS)100-SS" in line for line in out)
    assert any(line.startswith("state 0x40 power up") for line in out)
    assert any(line.startswith("state 0x43 stacker full") for line in out)
    assert out[-1] == "bye"
    assert not link.exists()  # symlink removed on exit


def test_main_rejects_bad_bill_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--bills", "10,257"]) == 2
    assert "bad bill entry" in capsys.readouterr().err
