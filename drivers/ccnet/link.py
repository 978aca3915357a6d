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
import time
from dataclasses import dataclass, field
from typing import Protocol

import serial

from drivers.ccnet.frame import Discarded, DiscardReason, Frame, FrameDecoder, build_frame
from drivers.ccnet.protocol import Address, Command, Control
from drivers.ccnet.replies import ControlReply, Reply, is_data, parse_reply
from drivers.ccnet.timing import LinkTiming
from drivers.framelog import FrameLog

log = logging.getLogger(__name__)

ACK_FRAME = build_frame(Command.ACK)
NAK_FRAME = build_frame(Command.NAK)


class SerialPort(Protocol):
    """The part of a pyserial port the link uses (a real port, a pty, `loop://`).

    It must be opened with a short read timeout: the link enforces its deadlines between
    reads, so a blocking read would stall it.
    """

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


class LinkError(Exception):
    """The exchange failed; the device layer decides what that means (OFFLINE, reopen)."""


class NoReply(LinkError):
    """No valid reply after every attempt (silence, or only corrupt frames)."""


class PortError(LinkError):
    """The port itself failed (unplugged USB adapter, closed pty): reopen it."""


@dataclass
class Exchange:
    """One request and its valid reply. `ack()` acknowledges a data reply, once."""

    command: Command
    reply: Reply
    _link: CcnetLink = field(repr=False)
    acked: bool = False

    @property
    def needs_ack(self) -> bool:
        return is_data(self.reply) and not self.acked

    def ack(self) -> None:
        if self.needs_ack:
            self._link.send_ack()
            self.acked = True


class CcnetLink:
    def __init__(
        self,
        port: SerialPort,
        timing: LinkTiming,
        frame_log: FrameLog,
        address: int = Address.BILL_VALIDATOR,
    ) -> None:
        self._port = port
        self._timing = timing
        self._log = frame_log
        self._address = address
        self._last_tx = 0.0

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

    def send_ack(self) -> None:
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
        """A late reply to an earlier attempt must not pass for the answer to this one."""
        try:
            stale = self._port.read(self._port.in_waiting) if self._port.in_waiting else b""
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"read failed: {exc}") from exc
        if stale:
            self._log.rx(stale, "stale, discarded")

    def _receive(self, timeout_s: float) -> tuple[Frame | None, bool]:
        """Read until a valid frame for our address, or the deadline.

        After a bad-CRC frame the deadline shrinks to a short settle time: the rest of a
        noisy burst may still hold the real frame, but we do not wait a full timeout.
        """
        decoder = FrameDecoder()
        deadline = time.monotonic() + timeout_s
        saw_bad_crc = False
        while True:
            now = time.monotonic()
            if now >= deadline:
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
                if item.address != self._address:
                    continue  # another peripheral on a shared line
                return item, saw_bad_crc
