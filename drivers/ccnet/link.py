"""The CCNET link: one request on the line at a time, ACK/NAK, retries, timeouts
(docs/protocols/ccnet.md, "Link rules").

Rules kept here so no caller can break them:
- the host ACKs every CRC-valid *data* reply, and only those: an `Exchange` exists only
  for a valid frame, so a frame whose CRC failed can never be acknowledged (the
  node-cashcode-bv bug);
- a bad-CRC reply is NAKed; the unit may then retransmit it (possibly late) or stay
  silent, which is unsettled (ccnet.md), so the link first listens for the retransmission
  and only then asks again (`drivers.frame_link`, rule 3); a device NAK means "say it
  again";
- a reply is matched to its command by shape: a data command (POLL, GET STATUS,
  IDENTIFICATION, GET BILL TABLE) is never answered by ACK, a command that expects ACK
  never by data, and only POLL by a one- or two-byte state. So a late ACK of STACK is
  never taken for a POLL reply, and a late POLL state never for STACK's ACK;
- a late POLL reply (one that answers an earlier POLL) is never dropped: it is queued,
  in arrival order, for the device layer (`take_late`), which must process it before the
  answer it came with - it may carry Bill Stacked that the unit will not repeat;
- the caller decides *when* to ACK (`Exchange.ack`), so a POLL reply carrying Bill Stacked
  is acknowledged only after the credit is on disk (M2). `request` ACKs at once for
  every other use.
Every frame in both directions goes to the raw frame log.
"""

from __future__ import annotations

import logging

from drivers.ccnet.frame import Frame, FrameDecoder, build_frame
from drivers.ccnet.protocol import DATA_COMMANDS, Address, Command, Control
from drivers.ccnet.replies import PollReply, Reply, is_data, parse_reply
from drivers.clock import SYSTEM_CLOCK, Clock
from drivers.frame_link import (
    FrameLink,
    LinkError,
    LinkExchange,
    LinkTiming,
    NoReply,
    PortError,
    SerialPort,
)
from drivers.framelog import FrameLog

__all__ = ["ACK_FRAME", "NAK_FRAME", "CcnetLink", "Exchange", "LinkError", "NoReply",
           "PortError", "SerialPort", "is_poll_shaped"]

log = logging.getLogger(__name__)

ACK_FRAME = build_frame(Command.ACK)
NAK_FRAME = build_frame(Command.NAK)
POLL_REPLY_MAX_LEN = 2  # Z1 and an optional Z2 (longer replies exist only on B2B units)
_CONTROL_CODES = frozenset(c.value for c in Control)


def _control_code(payload: bytes) -> int | None:
    return payload[0] if len(payload) == 1 and payload[0] in _CONTROL_CODES else None


def is_poll_shaped(payload: bytes) -> bool:
    """A POLL state (Z1, optional Z2): no other command is answered like that."""
    return 0 < len(payload) <= POLL_REPLY_MAX_LEN and _control_code(payload) is None


class Exchange(LinkExchange):
    """One request and its valid reply. `ack()` acknowledges a data reply, once."""

    @property
    def wants_ack(self) -> bool:
        return is_data(self.reply)


class CcnetLink(FrameLink[Frame]):
    ACK_FRAME = ACK_FRAME

    def __init__(
        self,
        port: SerialPort,
        timing: LinkTiming,
        frame_log: FrameLog,
        address: int = Address.BILL_VALIDATOR,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(port, timing, frame_log, FrameDecoder, clock)
        self._address = address
        self._late_polls: list[PollReply] = []

    def request(self, command: Command, data: bytes = b"", timeout_s: float | None = None) -> Reply:
        """Send, wait for the reply, ACK it if it carries data."""
        exchange = self.exchange(command, data, timeout_s)
        exchange.ack()
        return exchange.reply

    def exchange(
        self, command: Command, data: bytes = b"", timeout_s: float | None = None
    ) -> Exchange:
        """Send and wait for a valid reply; the caller must `ack()` a data reply."""
        frame = build_frame(command, data, self._address)
        timeout = self._timing.response_timeout_s if timeout_s is None else timeout_s
        valid = self._transact(command, frame, timeout)
        return Exchange(command, parse_reply(command, valid.payload), self)

    def take_late(self) -> list[PollReply]:
        """POLL replies that arrived late (answering an earlier POLL), oldest first.

        Each was received before the answer of the exchange that found it, so the device
        layer processes them first, and never acknowledges one: only the unit's last
        frame may be ACKed.
        """
        late, self._late_polls = self._late_polls, []
        return late

    # -- FrameLink hooks -------------------------------------------------------------------

    def _for_us(self, frame: Frame) -> bool:
        return frame.address == self._address  # not another peripheral on a shared line

    def _answers(self, command: int, frame: Frame) -> bool:
        code = _control_code(frame.payload)
        if code is not None:  # ACK answers only commands without data; NAK/ILLEGAL any
            return code != Control.ACK or command not in DATA_COMMANDS
        if command == Command.POLL:
            return is_poll_shaped(frame.payload)
        return command in DATA_COMMANDS and not is_poll_shaped(frame.payload)

    def _late(self, frame: Frame, command: int) -> None:
        super()._late(frame, command)
        if is_poll_shaped(frame.payload):
            self._late_polls.append(parse_reply(Command.POLL, frame.payload))  # type: ignore[arg-type]

    def _reject_bad_reply(self) -> bool:
        self._send(NAK_FRAME)
        return True  # the unit may retransmit the damaged reply

    def _says_again(self, frame: Frame, command: int) -> str | None:
        if _control_code(frame.payload) == Control.NAK:
            log.debug("device NAKed 0x%02X", command)
            return "device NAK"
        return None
