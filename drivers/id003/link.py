"""The ID-003 link: one request on the line at a time, retries, timeouts
(docs/protocols/id003.md, "Link rules").

ID-003 has no NAK: a host that gets no reply, a bad-CRC reply or COMMUNICATION ERROR
(0x4A) sends the same request again. Rules kept here so no caller can break them:
- the only frame the host ever acknowledges is VEND VALID (0x15), and only through
  `Exchange.ack`, which exists only for a CRC-valid reply that parsed as VEND VALID, so a
  damaged frame can never be acknowledged;
- the caller decides *when* to ACK, so the credit is on disk first (M2): `request` never
  acknowledges anything;
- a late reply to an earlier request is decoded and logged, never taken as the answer
  to a newer one (`drivers.frame_link`); the unit repeats VEND VALID until it is ACKed.
Every frame in both directions goes to the raw frame log.
"""

from __future__ import annotations

import logging

from drivers.clock import SYSTEM_CLOCK, Clock
from drivers.frame_link import FrameLink, LinkError, LinkExchange, NoReply, PortError, SerialPort
from drivers.framelog import FrameLog
from drivers.id003.frame import Frame, FrameDecoder, build_frame
from drivers.id003.protocol import Command
from drivers.id003.replies import CommunicationError, Reply, StatusReply, parse_reply
from drivers.id003.states import Status
from drivers.id003.timing import LinkTiming

__all__ = ["ACK_FRAME", "Exchange", "Id003Link", "LinkError", "NoReply", "PortError",
           "SerialPort"]

log = logging.getLogger(__name__)

ACK_FRAME = build_frame(Command.ACK)


class Exchange(LinkExchange):
    """One request and its valid reply. `ack()` acknowledges a VEND VALID, once."""

    @property
    def wants_ack(self) -> bool:
        return isinstance(self.reply, StatusReply) and self.reply.code == Status.VEND_VALID


class Id003Link(FrameLink[Frame]):
    ACK_FRAME = ACK_FRAME  # ACK (0x50): the acceptor sends nothing back

    def __init__(self, port: SerialPort, timing: LinkTiming, frame_log: FrameLog,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(port, timing, frame_log, FrameDecoder, clock)

    def request(self, command: int, data: bytes = b"", timeout_s: float | None = None) -> Reply:
        """Send and wait for the reply. Never acknowledges (see `exchange`)."""
        return self.exchange(command, data, timeout_s).reply

    def exchange(self, command: int, data: bytes = b"", timeout_s: float | None = None
                 ) -> Exchange:
        """Send and wait for a valid reply; the caller must `ack()` a VEND VALID."""
        frame = build_frame(command, data)
        timeout = self._timing.response_timeout_s if timeout_s is None else timeout_s
        valid = self._transact(command, frame, timeout)
        return Exchange(command, parse_reply(command, valid.payload), self)

    def _says_again(self, frame: Frame, command: int) -> str | None:
        if isinstance(parse_reply(command, frame.payload), CommunicationError):
            log.debug("acceptor could not read 0x%02X", command)
            return "communication error reported by the acceptor"
        return None
