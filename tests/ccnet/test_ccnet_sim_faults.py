"""The simulator's real-unit behaviours added for issue 12: what a unit does after the
host's NAK (retransmit, possibly late, or stay silent), late replies, line faults aimed
past a number of clean replies, a note in the stacker path at power loss, and a
realistic scan time. Raw CCNET bytes over the simulator's pty, no driver involved."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.ccnet.frame import Frame, FrameDecoder, build_frame
from drivers.ccnet.protocol import Command, Control
from drivers.ccnet.states import PollState
from drivers.frame_link import SerialPort
from drivers.framing import Discarded
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import CcnetDeviceModel, SimTiming
from drivers.transport import open_port
from tests.ccnet.conftest import SIM_TIMING

pytestmark = pytest.mark.timeout(30)

POLL = build_frame(Command.POLL)
NAK = build_frame(Command.NAK)
RESET = build_frame(Command.RESET)
READ_S = 0.01


@pytest.fixture
def line(tmp_path: Path, fast_profile) -> Iterator[tuple[CcnetSimulator, SerialPort]]:
    with CcnetSimulator(link=tmp_path / "tty", timing=SIM_TIMING) as sim:
        port = open_port(sim.path, fast_profile.serial, timeout_s=READ_S)
        try:
            yield sim, port
        finally:
            port.close()


def read_items(port: SerialPort, within_s: float, want: int = 1) -> list[Frame | Discarded]:
    """What the unit sends within `within_s` (stops early once `want` items came)."""
    decoder = FrameDecoder()
    items: list[Frame | Discarded] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and len(items) < want:
        items.extend(decoder.feed(port.read(64)))
    return items


def ask(port: SerialPort, frame: bytes, within_s: float = 1.0) -> Frame | Discarded:
    port.write(frame)
    items = read_items(port, within_s)
    assert items, "no reply"
    return items[0]


def test_after_nak_a_retransmitting_unit_sends_its_last_reply_again_late(line) -> None:
    sim, port = line
    sim.set_nak_mode("retransmit", 0.15)
    sim.command("corrupt_crc")
    damaged = ask(port, POLL)
    assert isinstance(damaged, Discarded)  # the CRC was corrupted on the line
    sent_at = time.monotonic()
    port.write(NAK)
    (again,) = read_items(port, 2.0)
    assert time.monotonic() - sent_at >= 0.15  # not before its delay
    assert isinstance(again, Frame) and again.payload == bytes((PollState.POWER_UP,))
    sim.wait_for("host NAK: retransmitting the last reply")


def test_after_nak_a_silent_unit_sends_nothing(line) -> None:
    sim, port = line
    assert sim.nak_mode == "silent"  # the default
    ask(port, POLL)
    port.write(NAK)
    assert read_items(port, 0.3) == []
    sim.wait_for("host NAK: staying silent")


def test_late_reply_comes_late_and_later_replies_queue_behind_it(line) -> None:
    sim, port = line
    assert sim.command("late_reply 1 200") == "ok"
    sent_at = time.monotonic()
    port.write(POLL)
    time.sleep(0.05)
    port.write(RESET)  # asked again before the late reply went out
    items = read_items(port, 2.0, want=2)
    assert time.monotonic() - sent_at >= 0.2
    assert [i.payload for i in items if isinstance(i, Frame)] == [
        bytes((PollState.POWER_UP,)), bytes((Control.ACK,))]  # in the order asked


def test_corrupt_after_lets_clean_replies_through_first(line) -> None:
    sim, port = line
    assert sim.command("corrupt_crc 1 2") == "ok"
    assert isinstance(ask(port, POLL), Frame)
    assert isinstance(ask(port, POLL), Frame)
    assert isinstance(ask(port, POLL), Discarded)
    assert isinstance(ask(port, POLL), Frame)


def test_power_cycle_with_a_note_in_the_stacker_path_without_any_stack(line) -> None:
    sim, port = line
    assert sim.command("power_cycle stacker 7").startswith("refused")  # 7 RUB: no such bill
    assert sim.model.base == PollState.POWER_UP  # untouched
    assert sim.command("power_cycle stacker 500") == "ok"
    assert ask(port, POLL).payload == bytes((PollState.POWER_UP_BILL_IN_STACKER,))
    assert ask(port, RESET).payload == bytes((Control.ACK,))
    sim.wait_for("stacked 500 RUB (credit recovery after power-up)")
    assert ask(port, POLL).payload == bytes((PollState.STACKED, 5))
    assert sim.counters.stacked == 1 and sim.counters.stacked_value == 500


def test_power_cycle_command_rejects_a_value_without_stacker(line) -> None:
    sim, _port = line
    assert sim.command("power_cycle validator 500").startswith("error:")
    assert sim.command("power_cycle stacker 50x").startswith("error:")


def test_model_power_cycle_keeps_its_old_signature() -> None:
    m = CcnetDeviceModel(timing=SIM_TIMING)
    assert m.power_cycle() == "ok" and m.base == PollState.POWER_UP


def test_default_scan_time_is_a_real_units() -> None:
    assert 0.3 <= SimTiming().accept_s <= 1.0


def test_cli_help_documents_the_new_behaviours() -> None:
    out = subprocess.run([sys.executable, "-m", "drivers.sim.ccnet", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for text in ("--nak-mode", "--nak-delay-ms", "nak_mode silent|retransmit", "late_reply",
                 "power_cycle [validator|stacker|none] [value]", "corrupt_crc [n] [after]",
                 "(default 500)"):
        assert text in out, text
