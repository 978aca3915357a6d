"""The CCNET link: one request on the line at a time, ACK/NAK, retries, timeouts (§1.4).

Rules kept here so no caller can break them:
- the host ACKs every CRC-valid *data* reply, and only those: an `Exchange` exists only
  for a valid frame, so a frame whose CRC failed can never be acknowledged (the
  node-cashcode-bv bug);
- a bad-CRC reply is NAKed and the request retried; a device NAK means "say it again";
- the caller decides *when* to ACK (`Exchange.ack`), so a POLL reply carrying Bill Stacked
  is acknowledged only after the credit is on disk (M2). `request` ACKs at once for
  every other use.
Every frame in both directions goes to the raw frame log.
"""

from __future__ import annotations

import logging

from drivers.ccnet.frame import Frame, FrameDecoder, build_frame
from drivers.ccnet.protocol import Address, Command, Control
from drivers.ccnet.replies import ControlReply, Reply, is_data, parse_reply
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
           "PortError", "SerialPort"]

log = logging.getLogger(__name__)

ACK_FRAME = build_frame(Command.ACK)
NAK_FRAME = build_frame(Command.NAK)


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
    ) -> None:
        super().__init__(port, timing, frame_log, FrameDecoder)
        self._address = address

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
        problem = "no reply"
        for attempt in range(1, self._timing.attempts + 1):
            self._discard_stale_input()
            self._send(frame)
            valid, saw_bad_crc = self._receive(timeout)
            if valid is not None:
                reply = parse_reply(command, valid.payload)
                if isinstance(reply, ControlReply) and reply.code == Control.NAK:
                    problem = "device NAK"
                    log.debug("device NAKed 0x%02X (attempt %d)", command, attempt)
                    continue
                return Exchange(command, reply, self)
            if saw_bad_crc:
                problem = "bad CRC"
                self._send(NAK_FRAME)
            else:
                problem = "no reply"
            log.debug("%s to 0x%02X (attempt %d)", problem, command, attempt)
        raise NoReply(
            f"{problem} to command 0x{command:02X} after {self._timing.attempts} attempts"
        )

    def _for_us(self, frame: Frame) -> bool:
        return frame.address == self._address  # not another peripheral on a shared line
