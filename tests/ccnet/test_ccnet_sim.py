"""The simulator on its own: the device model with a fake clock, and the command line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from drivers.ccnet.protocol import Command, Control
from drivers.ccnet.states import PollState
from drivers.sim import ccnet as sim_cli
from drivers.sim.ccnet import COMMANDS, CcnetSimulator, parse_bills
from drivers.sim.ccnet_model import CcnetDeviceModel, SimTiming
from tests.conftest import ManualClock as Clock

pytestmark = pytest.mark.timeout(30)

CLOCK_START = 100.0

ACK = bytes((Control.ACK,))
ILLEGAL = bytes((Control.ILLEGAL_COMMAND,))
ENABLE_ALL = bytes((Command.ENABLE_BILL_TYPES,)) + b"\xff\xff\xff\xff\xff\xff"


@pytest.fixture
def clock() -> Clock:
    return Clock(CLOCK_START)


@pytest.fixture
def model(clock: Clock) -> CcnetDeviceModel:
    events: list[str] = []
    m = CcnetDeviceModel(timing=SimTiming(), clock=clock, emit=events.append)
    m.events = events  # type: ignore[attr-defined]
    return m


def poll(model: CcnetDeviceModel) -> bytes:
    reply = model.handle(bytes((Command.POLL,)))
    assert reply is not None
    return reply


def boot(model: CcnetDeviceModel, clock: Clock) -> None:
    assert poll(model) == bytes((PollState.POWER_UP,))
    assert model.handle(bytes((Command.RESET,))) == ACK
    assert poll(model) == bytes((PollState.INITIALIZE,))
    assert model.handle(ENABLE_ALL) == ILLEGAL  # not while initializing
    clock.advance(SimTiming().init_s)
    assert poll(model) == bytes((PollState.UNIT_DISABLED,))


def test_boot_enable_insert_escrow_stack_repeat_until_ack(model, clock) -> None:
    boot(model, clock)
    assert model.handle(ENABLE_ALL) == ACK
    assert poll(model) == bytes((PollState.IDLING,))
    assert model.insert(500) == "ok"
    assert poll(model) == bytes((PollState.ACCEPTING,))
    clock.advance(1)
    assert poll(model) == bytes((PollState.ESCROW, 5))
    assert model.handle(bytes((Command.IDENTIFICATION,))) == ILLEGAL
    assert model.handle(bytes((Command.STACK,))) == ACK
    assert model.handle(bytes((Command.STACK,))) == ACK  # retransmit after a lost ACK
    assert poll(model) == bytes((PollState.STACKING,))
    clock.advance(1)
    assert poll(model) == bytes((PollState.STACKED, 5))
    assert poll(model) == bytes((PollState.STACKED, 5))  # not ACKed: repeated
    assert model.handle(bytes((Command.ACK,))) is None
    assert poll(model) == bytes((PollState.IDLING,))
    assert model.counters.stacked == 1 and model.counters.stacked_value == 500


def test_escrow_timeout_returns_bill_and_hold_extends(model, clock) -> None:
    boot(model, clock)
    model.handle(ENABLE_ALL)
    model.insert(100)
    clock.advance(1)
    assert poll(model) == bytes((PollState.ESCROW, 4))
    clock.advance(9)
    assert model.handle(bytes((Command.HOLD,))) == ACK
    clock.advance(9)
    assert poll(model) == bytes((PollState.HOLDING,))
    clock.advance(1.5)  # 10 s after the HOLD
    model.tick()
    assert poll(model) == bytes((PollState.RETURNING,))
    clock.advance(1)
    assert poll(model) == bytes((PollState.RETURNED, 4))
    model.handle(bytes((Command.ACK,)))
    assert poll(model) == bytes((PollState.IDLING,))
    assert model.counters.returned == 1 and model.counters.stacked == 0


def test_power_cycle_in_stacker_reports_stacked_after_reset(model, clock) -> None:
    boot(model, clock)
    model.handle(ENABLE_ALL)
    model.insert(1000)
    clock.advance(1)
    poll(model)
    model.handle(bytes((Command.STACK,)))
    model.power_cycle()  # while stacking: the bill is past the point of no return
    assert poll(model) == bytes((PollState.POWER_UP_BILL_IN_STACKER,))
    model.handle(bytes((Command.RESET,)))
    clock.advance(1)
    assert poll(model) == bytes((PollState.STACKED, 6))
    assert model.counters.stacked == 1


def test_faults_override_and_freeze(model, clock) -> None:
    boot(model, clock)
    model.handle(ENABLE_ALL)
    model.set_fault(PollState.VALIDATOR_JAMMED)
    assert poll(model) == bytes((PollState.VALIDATOR_JAMMED,))
    assert model.insert(100).startswith("refused")
    model.handle(bytes((Command.RESET,)))
    clock.advance(1)
    assert poll(model) == bytes((PollState.VALIDATOR_JAMMED,))  # physical: survives RESET
    model.clear()
    model.busy(3)
    assert poll(model) == bytes((PollState.BUSY, 3))
    clock.advance(0.31)
    assert poll(model) == bytes((PollState.UNIT_DISABLED,))


def test_unknown_command_is_illegal(model) -> None:
    assert model.handle(b"\x32\x00\x00\x00") == ILLEGAL


def test_parse_bills() -> None:
    records = parse_bills("10,50,-,100", "RUS")
    assert [(r.bill_type, r.mantissa, r.exponent) for r in records] == [
        (0, 1, 1), (1, 5, 1), (3, 1, 2)]
    assert [r.bill_type for r in parse_bills("2=10,7=5000", "KAZ")] == [2, 7]


def test_control_language_errors(tmp_path: Path) -> None:
    sim = CcnetSimulator(link=tmp_path / "tty")
    assert sim.command("frobnicate").startswith("error: unknown command")
    assert sim.command("insert").startswith("error: usage")
    assert sim.command("reject nonsense").startswith("error: unknown reject reason")
    assert sim.command("power_cycle sideways").startswith("error: usage")
    assert sim.command("busy 999").startswith("error: busy")
    assert sim.command("# a comment") == ""
    assert "state 0x10 power up" in sim.command("status")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sim_cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("insert", "jam", "cassette_full", "cassette_out", "cassette_in", "cheated",
                 "pause", "failure", "busy", "power_cycle", "corrupt_crc", "drop_reply",
                 "repeat_stacked", "clear", "reject", "status", "quit"):
        assert f"  {name}" in out
    assert {c.name for c in COMMANDS} <= set(out.split())


def test_main_reads_commands_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "ttyCLI"
    monkeypatch.setattr("sys.stdin", io.StringIO("status\ncassette_full\nstatus\nquit\n"))
    assert sim_cli.main(["--link", str(link), "--serial", "SN0001", "--bills", "10,50"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("power up")
    assert any("serial SN0001" in line for line in out)
    assert any(line.startswith("state 0x10 power up") for line in out)
    assert any(line.startswith("state 0x41 drop cassette full") for line in out)
    assert out[-1] == "bye"
    assert not link.exists()  # symlink removed on exit


def test_main_rejects_bad_bill_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_cli.main(["--bills", "10,257"]) == 2
    assert "bad bill entry" in capsys.readouterr().err
