"""The ID-003 link: one request on the line at a time, retries, timeouts (§2).

ID-003 has no NAK: a host that gets no reply, a bad-CRC reply or COMMUNICATION ERROR
(0x4A) sends the same request again. Rules kept here so no caller can break them:
- the only frame the host ever acknowledges is VEND VALID (0x15), and only through
  `Exchange.ack`, which exists only for a CRC-valid reply that parsed as VEND VALID, so a
  damaged frame can never be acknowledged;
- the caller decides *when* to ACK, so the credit is on disk first (M2): `request` never
  acknowledges anything;
- a late reply to an earlier attempt is discarded before the next one is sent.
Every frame in both directions goes to the raw frame log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import serial

from drivers.ccnet.link import LinkError, NoReply, PortError, SerialPort
from drivers.framelog import FrameLog
from drivers.id003.frame import Discarded, DiscardReason, Frame, FrameDecoder, build_frame
from drivers.id003.protocol import Command
from drivers.id003.replies import CommunicationError, Reply, StatusReply, parse_reply
from drivers.id003.states import Status
from drivers.id003.timing import LinkTiming

__all__ = ["ACK_FRAME", "Exchange", "Id003Link", "LinkError", "NoReply", "PortError",
           "SerialPort"]

log = logging.getLogger(__name__)

ACK_FRAME = build_frame(Command.ACK)


@dataclass
class Exchange:
    """One request and its valid reply. `ack()` acknowledges a VEND VALID, once."""

    command: int
    reply: Reply
    _link: Id003Link = field(repr=False)
    acked: bool = False

    @property
    def needs_ack(self) -> bool:
        return (
            isinstance(self.reply, StatusReply)
            and self.reply.code == Status.VEND_VALID
            and not self.acked
        )

    def ack(self) -> None:
        if self.needs_ack:
            self._link.send_ack()
            self.acked = True


class Id003Link:
    def __init__(self, port: SerialPort, timing: LinkTiming, frame_log: FrameLog) -> None:
        self._port = port
        self._timing = timing
        self._log = frame_log
        self._last_tx = 0.0

    def request(self, command: int, data: bytes = b"", timeout_s: float | None = None) -> Reply:
        """Send and wait for the reply. Never acknowledges (see `exchange`)."""
        return self.exchange(command, data, timeout_s).reply

    def exchange(self, command: int, data: bytes = b"", timeout_s: float | None = None
                 ) -> Exchange:
        """Send and wait for a valid reply; the caller must `ack()` a VEND VALID."""
        frame = build_frame(command, data)
        timeout = self._timing.response_timeout_s if timeout_s is None else timeout_s
        problem = "no reply"
        for attempt in range(1, self._timing.attempts + 1):
            self._discard_stale_input()
            self._send(frame)
            valid, saw_bad_crc = self._receive(timeout)
            if valid is not None:
                reply = parse_reply(command, valid.payload)
                if isinstance(reply, CommunicationError):
                    problem = "communication error reported by the acceptor"
                    log.debug("acceptor could not read 0x%02X (attempt %d)", command, attempt)
                    continue
                return Exchange(command, reply, self)
            problem = "bad CRC" if saw_bad_crc else "no reply"
            log.debug("%s to 0x%02X (attempt %d)", problem, command, attempt)
        raise NoReply(
            f"{problem} to command 0x{command:02X} after {self._timing.attempts} attempts"
        )

    def send_ack(self) -> None:
        """ACK (0x50): the acceptor sends nothing back."""
        self._send(ACK_FRAME)

    # -- bytes ---------------------------------------------------------------------------

    def _send(self, frame: bytes) -> None:
        gap = self._last_tx + self._timing.command_gap_s - time.monotonic()
        if gap > 0:
            time.sleep(gap)
        try:
            self._port.write(frame)
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"write failed: {exc}") from exc
        self._last_tx = time.monotonic()
        self._log.tx(frame)

    def _discard_stale_input(self) -> None:
        try:
            stale = self._port.read(self._port.in_waiting) if self._port.in_waiting else b""
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"read failed: {exc}") from exc
        if stale:
            self._log.rx(stale, "stale, discarded")

    def _receive(self, timeout_s: float) -> tuple[Frame | None, bool]:
        """Read until a valid frame or the deadline. After a bad-CRC frame the deadline
        shrinks to a short settle time: the rest of a noisy burst may still hold the real
        frame, but a full timeout would only delay the retry."""
        decoder = FrameDecoder()
        deadline = time.monotonic() + timeout_s
        saw_bad_crc = False
        while True:
            if time.monotonic() >= deadline:
                for item in decoder.flush():
                    self._log.rx(item.raw, item.reason.value)
                return None, saw_bad_crc
            try:
                waiting = self._port.in_waiting
                chunk = self._port.read(waiting if waiting > 0 else 1)
            except (serial.SerialException, OSError) as exc:
                raise PortError(f"read failed: {exc}") from exc
            if not chunk:
                continue
            for item in decoder.feed(chunk):
                if isinstance(item, Discarded):
                    self._log.rx(item.raw, item.reason.value)
                    if item.reason is DiscardReason.BAD_CRC:
                        saw_bad_crc = True
                        deadline = min(deadline, time.monotonic() + self._timing.settle_s)
                    continue
                self._log.rx(item.raw)
                return item, saw_bad_crc
