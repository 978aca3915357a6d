"""Issue 12, defect 1: a reply that comes late (or again, after a NAK) must answer the
command it belongs to, and no valid frame may be dropped unread or left out of the log.

The defect: after NAKing a bad-CRC reply the link cleared its input and then waited the
gap between host frames; the unit's retransmission landed in that gap and was taken as
the answer to the re-sent POLL, the ACK went out for it, the unit took that ACK as meant
for the Bill Stacked it had just sent, and the 0x81 that followed was dropped unread.

Two layers are tested. `TimedPort` is a passive port whose scripted replies become
readable a fixed time after the frame they answer - the unit's timing without a thread,
so the ordering on the line is exact. Then the whole terminal (real engine, ledger, CCNET
driver) against the simulator in each after-NAK behaviour: the note is credited once,
the escrow resolved, and every valid frame the unit sent is in the frame log.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.ccnet.factory import FRAME_LOG_NAME
from drivers.ccnet.frame import Frame, FrameDecoder, build_frame
from drivers.ccnet.link import ACK_FRAME, NAK_FRAME, CcnetLink
from drivers.ccnet.protocol import Command, Control
from drivers.ccnet.replies import ControlReply, PollReply
from drivers.ccnet.states import PollState
from drivers.frame_link import LinkTiming
from drivers.framelog import FrameLog
from drivers.profiles import load_profile
from tests.acceptor_fixtures import write_profile
from tests.acceptor_terminal import started_rigs
from tests.ccnet.conftest import FAST_PROFILE, PROFILE_NAME
from tests.ccnet.terminal import SIM_TIMING, Rig, wait_until

pytestmark = pytest.mark.timeout(60)

GAP_S = 0.06
TIMING = LinkTiming(response_timeout_s=0.15, ident_timeout_s=0.3, attempts=3, settle_s=0.01,
                    command_gap_s=GAP_S)
READ_TIMEOUT_S = 0.01

POLL = build_frame(Command.POLL)
STACK = build_frame(Command.STACK)
STACKING = build_frame(PollState.STACKING)
STACKED_7 = build_frame(PollState.STACKED, b"\x07")
IDLING = build_frame(PollState.IDLING)
DEVICE_ACK = build_frame(Control.ACK)


def corrupt(frame: bytes) -> bytes:
    return frame[:-1] + bytes((frame[-1] ^ 0xFF,))


Reply = list[tuple[float, bytes]]
"""What the unit sends for one host frame: (seconds after that frame, bytes)."""


class TimedPort:
    """A serial port whose replies are scripted per host frame and become readable at a
    fixed time after it; a read with nothing due waits like a port's read timeout."""

    def __init__(self, replies: dict[bytes, list[Reply]]) -> None:
        self.replies = {k: list(v) for k, v in replies.items()}
        self.written: list[bytes] = []
        self._due: list[tuple[float, bytes]] = []  # (readable from, byte)

    def _ready(self) -> int:
        now = time.monotonic()
        return sum(1 for t, _ in self._due if t <= now)

    @property
    def in_waiting(self) -> int:
        return self._ready()

    def read(self, size: int = 1) -> bytes:
        if not self._ready():
            time.sleep(READ_TIMEOUT_S)
        n = min(size, self._ready())
        out = bytes(b for _, b in self._due[:n])
        del self._due[:n]
        return out

    def write(self, data: bytes, /) -> int:
        self.written.append(data)
        queue = self.replies.get(data)
        if queue:
            now = time.monotonic()
            for delay, frame in queue.pop(0):
                # a unit's frames leave in order: never before what is already queued
                start = max([now + delay, *(t for t, _ in self._due[-1:])])
                self._due.extend((start, b) for b in frame)
        return len(data)

    def reset_input_buffer(self) -> None:
        self._due.clear()

    def close(self) -> None:
        pass


def new_link(port: TimedPort, frame_log: FrameLog | None = None) -> CcnetLink:
    return CcnetLink(port, TIMING, frame_log or FrameLog("t", None))


# -- the link ----------------------------------------------------------------------------


def test_retransmission_in_the_gap_answers_the_original_poll_and_stacked_is_not_lost(
        tmp_path: Path) -> None:
    """The defect itself: STACKING is corrupted, the unit retransmits it 10 ms after the
    NAK (inside the 60 ms gap), and has stacked the bill by the time it is polled again."""
    port = TimedPort({
        POLL: [[(0.0, corrupt(STACKING))], [(0.0, STACKED_7)]],
        NAK_FRAME: [[(0.010, STACKING)]],
    })
    log_path = tmp_path / "frames.log"
    frame_log = FrameLog("t-gap", log_path)
    link = new_link(port, frame_log)
    first = link.exchange(Command.POLL)
    assert first.reply == PollReply(PollState.STACKING)  # the retransmission answers it
    first.ack()
    second = link.exchange(Command.POLL)
    assert second.reply == PollReply(PollState.STACKED, 7)  # read, not dropped
    second.ack()
    assert port.written == [POLL, NAK_FRAME, ACK_FRAME, POLL, ACK_FRAME]
    frame_log.close()
    rx = [line.split(" ", 2)[2] for line in log_path.read_text().splitlines() if " RX " in line]
    assert rx == [f"{corrupt(STACKING).hex(' ')} (bad crc)", STACKING.hex(" "),
                  STACKED_7.hex(" ")]


def test_silent_unit_after_nak_is_asked_again() -> None:
    port = TimedPort({POLL: [[(0.0, corrupt(STACKING))], [(0.0, STACKED_7)]]})
    link = new_link(port)
    assert link.exchange(Command.POLL).reply == PollReply(PollState.STACKED, 7)
    assert port.written == [POLL, NAK_FRAME, POLL]
    assert link.take_late() == []


def test_retransmission_after_the_listening_time_comes_before_the_new_answer() -> None:
    """Retransmitted 450 ms after the NAK (the link listened 300 ms and asked again): on a
    first-in-first-out line the old reply comes first, the last one answers the POLL.
    (150 ms of slack on either side, for a loaded machine.)"""
    port = TimedPort({
        POLL: [[(0.0, corrupt(STACKING))], [(0.0, STACKED_7)]],
        NAK_FRAME: [[(0.45, STACKING)]],
    })
    link = CcnetLink(port, dataclasses.replace(TIMING, response_timeout_s=0.3),
                     FrameLog("t", None))
    assert link.exchange(Command.POLL).reply == PollReply(PollState.STACKED, 7)
    assert link.take_late() == [PollReply(PollState.STACKING)]
    assert port.written == [POLL, NAK_FRAME, POLL]


def test_stacked_that_arrives_before_a_late_retransmission_is_handed_on_not_lost() -> None:
    """A unit that answers the re-sent POLL first and retransmits the old reply after it:
    the answer is the last frame (what the unit will take an ACK for), and the 0x81 before
    it goes to the device layer as a late POLL reply."""
    port = TimedPort({
        POLL: [[(0.0, corrupt(STACKING))], [(0.0, STACKED_7), (0.02, STACKING)]],
    })
    link = new_link(port)
    assert link.exchange(Command.POLL).reply == PollReply(PollState.STACKING)
    assert link.take_late() == [PollReply(PollState.STACKED, 7)]


def test_late_ack_is_never_the_answer_to_poll() -> None:
    port = TimedPort({POLL: [[(0.005, DEVICE_ACK), (0.01, IDLING)]]})
    link = new_link(port)
    assert link.exchange(Command.POLL).reply == PollReply(PollState.IDLING)


def test_late_poll_state_is_never_the_answer_to_stack_and_is_handed_on() -> None:
    port = TimedPort({STACK: [[(0.005, STACKED_7), (0.01, DEVICE_ACK)]]})
    link = new_link(port)
    assert link.request(Command.STACK) == ControlReply(Control.ACK)
    assert link.take_late() == [PollReply(PollState.STACKED, 7)]


def test_no_ack_when_the_unit_sent_another_frame_after_the_reply() -> None:
    """The unit would take the ACK as meant for its newer frame: not sent; the newer frame
    is a late reply at the next exchange, and the unit repeats its report."""
    port = TimedPort({POLL: [[(0.0, STACKED_7), (0.005, STACKED_7)], [(0.0, STACKED_7)]]})
    link = new_link(port)
    exchange = link.exchange(Command.POLL)
    exchange.ack()
    assert not exchange.acked and port.written == [POLL]
    again = link.exchange(Command.POLL)
    assert link.take_late() == [PollReply(PollState.STACKED, 7)]
    again.ack()
    assert again.acked and port.written == [POLL, POLL, ACK_FRAME]


def test_stale_input_is_decoded_and_logged_frame_by_frame(tmp_path: Path) -> None:
    port = TimedPort({POLL: [[(0.0, IDLING)]]})
    port._due = [(0.0, b) for b in STACKED_7 + STACKING]  # waiting before the exchange
    log_path = tmp_path / "frames.log"
    frame_log = FrameLog("t-stale", log_path)
    link = new_link(port, frame_log)
    assert link.exchange(Command.POLL).reply == PollReply(PollState.IDLING)
    assert link.take_late() == [PollReply(PollState.STACKED, 7), PollReply(PollState.STACKING)]
    frame_log.close()
    rx = [line.split(" ", 2)[2] for line in log_path.read_text().splitlines() if " RX " in line]
    assert rx == [STACKED_7.hex(" "), STACKING.hex(" "), IDLING.hex(" ")]


# -- the whole terminal against the simulator ----------------------------------------------

SLOW_STACKER = dataclasses.replace(SIM_TIMING, stack_s=10.0)
"""The stacker finishes only when the test says so (`hurry` on the host's NAK)."""


@dataclasses.dataclass(frozen=True)
class AfterNak:
    mode: str
    delay_s: float


AFTER_NAK = {
    "retransmit-in-the-gap": AfterNak("retransmit", 0.010),  # inside the 60 ms gap
    "retransmit-late": AfterNak("retransmit", 0.25),  # past the 150 ms listening time
    "silent": AfterNak("silent", 0.0),
}


@pytest.fixture
def make_rig(tmp_path):
    profile = load_profile(write_profile(
        tmp_path, FAST_PROFILE, PROFILE_NAME,
        **{"command_gap_ms = 0": f"command_gap_ms = {round(GAP_S * 1000)}"}))
    yield from started_rigs(lambda **kwargs: Rig(tmp_path, profile, **kwargs))


def record_sent(rig: Rig) -> list[bytes]:
    """Every chunk the simulated unit writes to the line, in order."""
    sent: list[bytes] = []
    send: Callable[[bytes], None] = rig.sim._send

    def recording(data: bytes) -> None:
        sent.append(data)
        send(data)

    rig.sim._send = recording  # type: ignore[method-assign]
    return sent


def valid_frames(stream: bytes) -> list[str]:
    return [item.raw.hex(" ") for item in FrameDecoder().feed(stream) if isinstance(item, Frame)]


def logged_valid_frames(path: Path) -> list[str]:
    """RX lines of valid frames (a discarded chunk carries its reason in brackets)."""
    lines = [line.split(" ", 2) for line in path.read_text().splitlines()]
    return [rest for _t, way, rest in lines if way == "RX" and not rest.endswith(")")]


@pytest.mark.parametrize("after_nak", list(AFTER_NAK), ids=list(AFTER_NAK))
def test_corrupted_reply_right_after_stack_credits_the_note_once(make_rig, after_nak) -> None:
    rig = make_rig(sim_timing=SLOW_STACKER)
    behaviour = AFTER_NAK[after_nak]
    rig.sim.set_nak_mode(behaviour.mode, behaviour.delay_s)
    sent = record_sent(rig)
    rig.to_cash()
    rig.wait_taking_bills(500)
    # STACK's own ACK goes through; the first POLL reply after it (Stacking) is damaged;
    # the bill reaches the cassette the moment the host NAKs that reply.
    rig.hooks.on("stacking 500", lambda _l: rig.sim.arm("corrupt", 1, after=1))
    rig.hooks.on("host NAK", lambda _l: rig.sim.model.hurry())
    mark = rig.insert(500)
    rig.sim.wait_for("reply CRC corrupted", since=mark)
    rig.sim.wait_for("host NAK", since=mark)
    wait_until(lambda: rig.inserted() == 50_000, what="the 500 credited")
    rig.sim.wait_for("host acked 0x81", since=mark)
    assert rig.sim.counters.stacked == 1
    assert [b[0] for b in rig.stacked_bills()] == [50_000]  # once, not lost, not twice
    assert rig.rows("SELECT amount_minor, state FROM escrows") == [(50_000, "stacked")]
    rig.sim.with_model(lambda m: setattr(m, "timing", SIM_TIMING))  # a quick stacker again
    rig.insert_credited(100)  # the session takes the next bill (it used to return them)
    rig.assert_money_consistent()
    rig.core.stop()  # the driver leaves the unit disabled and closes the frame log
    frames = valid_frames(b"".join(sent))
    assert frames, "the unit sent frames"
    logged = logged_valid_frames(rig.config.paths.log_dir / FRAME_LOG_NAME)
    missing = collections.Counter(frames) - collections.Counter(logged)
    assert not missing, f"valid frames sent but not in the frame log: {missing}"


def test_stacked_reply_past_the_timeout_is_credited_once(make_rig) -> None:
    """(b) a slow unit: the reply carrying Bill Stacked comes 250 ms after the POLL, past
    the 150 ms timeout; the host asks again and reads both replies (late one first)."""
    rig = make_rig()
    sent = record_sent(rig)
    rig.to_cash()
    rig.wait_taking_bills(500)
    rig.sim.when("stacked 500", "late_reply 1 250")
    mark = rig.insert(500)
    rig.sim.wait_for("reply late by 250 ms", since=mark)
    wait_until(lambda: rig.inserted() == 50_000, what="the 500 credited")
    rig.sim.wait_for("host acked 0x81", since=mark)
    assert rig.sim.counters.stacked == 1
    assert [b[0] for b in rig.stacked_bills()] == [50_000]
    rig.assert_money_consistent()
    rig.core.stop()
    logged = logged_valid_frames(rig.config.paths.log_dir / FRAME_LOG_NAME)
    missing = collections.Counter(valid_frames(b"".join(sent))) - collections.Counter(logged)
    assert not missing, f"valid frames sent but not in the frame log: {missing}"


def test_note_in_the_stacker_at_power_loss_without_stack_is_credited_once(make_rig) -> None:
    """(c) the unit loses power with a note in its stacker path this host never sent STACK
    for: 0x12 at power-up, RESET, then 0x81 for that note - one credit, never a repeat."""
    rig = make_rig()
    mark = rig.sim.mark()
    assert rig.sim.power_cycle(note_in_stacker=1000) == "ok"
    rig.sim.wait_for("stacked 1000 RUB (credit recovery after power-up)", since=mark)
    rig.sim.wait_for("host acked 0x81", since=mark)
    wait_until(lambda: len(rig.stacked_bills()) == 1, what="the note in the ledger")
    assert [b[0] for b in rig.stacked_bills()] == [100_000]
    assert rig.sim.counters.stacked == 1
    rig.wait_in_service()
    rig.assert_money_consistent()
