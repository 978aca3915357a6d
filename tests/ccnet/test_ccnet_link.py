"""Link layer: ACK/NAK rules and retries, against the simulator and a scripted port."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.ccnet.frame import build_frame
from drivers.ccnet.link import ACK_FRAME, NAK_FRAME, CcnetLink, NoReply
from drivers.ccnet.protocol import Command, Control
from drivers.ccnet.replies import ControlReply, Identification, PollReply
from drivers.framelog import FrameLog
from drivers.sim.ccnet import CcnetSimulator
from drivers.transport import open_port
from tests import acceptor_line

pytestmark = pytest.mark.timeout(30)

TIMING = acceptor_line.LINK_TIMING


class ScriptedPort(acceptor_line.ScriptedPort):
    SILENT = (ACK_FRAME, NAK_FRAME)  # the host's acknowledgements get no answer


POLL = build_frame(Command.POLL)
STACKED_7 = bytes.fromhex("02 03 07 81 07 EB 5E")


def test_data_reply_is_acked_only_when_asked() -> None:
    port = ScriptedPort([STACKED_7])
    link = CcnetLink(port, TIMING, FrameLog("t", None))
    exchange = link.exchange(Command.POLL)
    assert exchange.reply == PollReply(0x81, 7)
    assert port.written == [POLL]  # no ACK yet: the ledger comes first (M2)
    exchange.ack()
    exchange.ack()  # idempotent
    assert port.written == [POLL, ACK_FRAME]


def test_bad_crc_reply_is_naked_never_acked_and_retried() -> None:
    port = ScriptedPort([STACKED_7[:-1] + b"\x00", STACKED_7])
    link = CcnetLink(port, TIMING, FrameLog("t", None))
    assert link.request(Command.POLL) == PollReply(0x81, 7)
    assert port.written == [POLL, NAK_FRAME, POLL, ACK_FRAME]


def test_device_nak_means_retransmit() -> None:
    port = ScriptedPort([build_frame(Control.NAK), build_frame(Control.ACK)])
    link = CcnetLink(port, TIMING, FrameLog("t", None))
    reset = build_frame(Command.RESET)
    assert link.request(Command.RESET) == ControlReply(Control.ACK)
    assert port.written == [reset, reset]  # control replies are not ACKed


def test_silence_and_corruption_give_up_after_three_attempts() -> None:
    port = ScriptedPort([None, STACKED_7[:-1] + b"\x00", None])
    link = CcnetLink(port, TIMING, FrameLog("t", None))
    with pytest.raises(NoReply, match="after 3 attempts"):
        link.exchange(Command.POLL)
    assert port.written == [POLL, POLL, NAK_FRAME, POLL]
    assert ACK_FRAME not in port.written


def test_reply_for_another_address_is_ignored() -> None:
    other = build_frame(0x19, b"", address=0x01)
    port = ScriptedPort([other + build_frame(0x19)])
    link = CcnetLink(port, TIMING, FrameLog("t", None))
    assert link.request(Command.POLL) == PollReply(0x19)


def test_frames_are_logged(tmp_path: Path) -> None:
    log_path = tmp_path / "frames.log"
    frame_log = FrameLog("t-log", log_path)
    port = ScriptedPort([STACKED_7[:-1] + b"\x00", STACKED_7])
    CcnetLink(port, TIMING, frame_log).request(Command.POLL)
    frame_log.close()
    lines = log_path.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "TX 02 03 06 33 da 81",
        "RX 02 03 07 81 07 eb 00 (bad crc)",
        "TX 02 03 06 ff ba 8d",
        "TX 02 03 06 33 da 81",
        "RX 02 03 07 81 07 eb 5e",
        "TX 02 03 06 00 c2 82",
    ]


def test_link_against_simulator_corruption(tmp_path: Path, fast_profile) -> None:
    with CcnetSimulator(link=tmp_path / "tty") as sim:
        port = open_port(sim.path, fast_profile.serial, timeout_s=0.01)
        try:
            link = CcnetLink(port, TIMING, FrameLog("t", None))
            sim.command("corrupt_crc 2")
            reply = link.request(Command.IDENTIFICATION, timeout_s=0.3)
            assert isinstance(reply, Identification) and reply.serial_number == "41A123456789"
            sim.wait_for("reply CRC corrupted", since=0)
            assert link.request(Command.POLL) == PollReply(0x10)
            sim.command("corrupt_crc 3")
            with pytest.raises(NoReply, match="bad CRC"):
                link.request(Command.POLL)
        finally:
            port.close()
