"""ID-003 link: retries without NAK, VEND VALID's ACK only when asked, against a scripted
port and against the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.framelog import FrameLog
from drivers.id003.frame import build_frame
from drivers.id003.link import ACK_FRAME, Id003Link, NoReply
from drivers.id003.protocol import Command
from drivers.id003.replies import AckReply, StatusReply, VersionReply
from drivers.sim.id003 import Id003Simulator
from drivers.transport import open_port
from tests import acceptor_line

pytestmark = pytest.mark.timeout(30)

TIMING = acceptor_line.LINK_TIMING


class ScriptedPort(acceptor_line.ScriptedPort):
    SILENT = (ACK_FRAME,)  # the host's acknowledgements get no answer


STATUS = build_frame(Command.STATUS_REQUEST)
VEND_VALID = build_frame(0x15)
CORRUPT_VEND_VALID = VEND_VALID[:-1] + bytes((VEND_VALID[-1] ^ 0xFF,))


def test_vend_valid_is_acked_only_when_asked() -> None:
    port = ScriptedPort([VEND_VALID])
    link = Id003Link(port, TIMING, FrameLog("t", None))
    exchange = link.exchange(Command.STATUS_REQUEST)
    assert exchange.reply == StatusReply(0x15)
    assert exchange.needs_ack
    assert port.written == [STATUS]  # no ACK yet: the ledger comes first (M2)
    exchange.ack()
    exchange.ack()  # idempotent
    assert port.written == [STATUS, ACK_FRAME]
    assert bytes.fromhex("FC 05 50 AA 05") == ACK_FRAME


def test_request_never_acknowledges_and_other_statuses_need_no_ack() -> None:
    port = ScriptedPort([VEND_VALID, build_frame(0x16)])
    link = Id003Link(port, TIMING, FrameLog("t", None))
    assert link.request(Command.STATUS_REQUEST) == StatusReply(0x15)
    exchange = link.exchange(Command.STATUS_REQUEST)
    assert exchange.reply == StatusReply(0x16) and not exchange.needs_ack
    exchange.ack()
    assert ACK_FRAME not in port.written


def test_bad_crc_reply_is_asked_again_never_acked() -> None:
    port = ScriptedPort([CORRUPT_VEND_VALID, VEND_VALID])
    link = Id003Link(port, TIMING, FrameLog("t", None))
    exchange = link.exchange(Command.STATUS_REQUEST)
    assert exchange.reply == StatusReply(0x15)
    assert port.written == [STATUS, STATUS]  # ID-003 has no NAK: the host asks again


def test_communication_error_from_the_unit_means_say_it_again() -> None:
    port = ScriptedPort([build_frame(0x4A), build_frame(0x50)])
    link = Id003Link(port, TIMING, FrameLog("t", None))
    assert link.request(Command.STACK_1) == AckReply()
    assert port.written == [build_frame(Command.STACK_1)] * 2


def test_silence_and_corruption_give_up_after_three_attempts() -> None:
    port = ScriptedPort([None, CORRUPT_VEND_VALID, None])
    link = Id003Link(port, TIMING, FrameLog("t", None))
    with pytest.raises(NoReply, match="after 3 attempts"):
        link.exchange(Command.STATUS_REQUEST)
    assert port.written == [STATUS] * 3
    assert ACK_FRAME not in port.written


def test_stale_bytes_are_discarded_before_sending() -> None:
    port = ScriptedPort([build_frame(0x1A)])
    port._rx = build_frame(0x15)  # a late reply to an earlier request
    link = Id003Link(port, TIMING, FrameLog("t", None))
    assert link.request(Command.STATUS_REQUEST) == StatusReply(0x1A)


def test_frames_are_logged(tmp_path: Path) -> None:
    log_path = tmp_path / "frames.log"
    frame_log = FrameLog("t-log", log_path)
    port = ScriptedPort([CORRUPT_VEND_VALID, VEND_VALID])
    Id003Link(port, TIMING, frame_log).exchange(Command.STATUS_REQUEST).ack()
    frame_log.close()
    lines = log_path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "TX fc 05 11 27 56",
        f"RX {CORRUPT_VEND_VALID.hex(' ')} (bad crc)",
        "TX fc 05 11 27 56",
        f"RX {VEND_VALID.hex(' ')}",
        "TX fc 05 50 aa 05",
    ]


def test_link_against_simulator_corruption(tmp_path: Path, fast_profile) -> None:
    with Id003Simulator(link=tmp_path / "tty") as sim:
        port = open_port(sim.path, fast_profile.serial, timeout_s=0.01)
        try:
            link = Id003Link(port, TIMING, FrameLog("t", None))
            sim.command("corrupt_crc 2")
            reply = link.request(Command.VERSION_REQUEST, timeout_s=0.3)
            assert isinstance(reply, VersionReply) and reply.model == "U(RUS)-SS"
            sim.wait_for("reply CRC corrupted", since=0)
            assert link.request(Command.STATUS_REQUEST) == StatusReply(0x40)
            sim.command("corrupt_crc 3")
            with pytest.raises(NoReply, match="bad CRC"):
                link.request(Command.STATUS_REQUEST)
            # a damaged host frame is answered with COMMUNICATION ERROR [U]
            port.write(STATUS[:-1] + b"\x00")
            sim.wait_for("bad CRC from host")
            assert sim.counters.comm_errors == 1
        finally:
            port.close()
