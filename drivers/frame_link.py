"""The byte side of an acceptor link, shared by CCNET and ID-003 (one request at a time).

Both protocols are half-duplex with one outstanding request: the host keeps a gap between
its frames, throws away whatever a late reply left in the input buffer before it asks
again, and reads until one CRC-valid frame arrives or the deadline passes. `FrameLink`
does exactly that and nothing protocol-specific; each protocol's link adds its retry rule
(CCNET NAKs a damaged reply, ID-003 just asks again) and its `Exchange`.
Every frame in both directions goes to the raw frame log.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol

import serial

from drivers.framelog import FrameLog
from drivers.framing import Discarded, DiscardReason, FrameT, StreamDecoder


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


@dataclass(frozen=True)
class LinkTiming:
    """What the link layer needs: one exchange's deadline, retries, gaps."""

    response_timeout_s: float
    ident_timeout_s: float
    attempts: int
    settle_s: float  # quiet time after a bad-CRC frame before NAKing it
    command_gap_s: float  # minimum time between two host frames


class FrameLink(Generic[FrameT]):
    """Frames out and in on one port; `new_decoder` makes the protocol's frame finder."""

    ACK_FRAME: ClassVar[bytes]
    """The host's acknowledgement of a reply, as the protocol frames it."""

    def __init__(
        self,
        port: SerialPort,
        timing: LinkTiming,
        frame_log: FrameLog,
        new_decoder: Callable[[], StreamDecoder[FrameT]],
    ) -> None:
        self._port = port
        self._timing = timing
        self._log = frame_log
        self._new_decoder = new_decoder
        self._last_tx = 0.0

    def send_ack(self) -> None:
        """Acknowledge the last reply; the unit sends nothing back."""
        self._send(self.ACK_FRAME)

    def _for_us(self, frame: FrameT) -> bool:
        """False for a valid frame meant for another peripheral on a shared line."""
        return True

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

    def _receive(self, timeout_s: float) -> tuple[FrameT | None, bool]:
        """Read until a valid frame for us, or the deadline; and whether a bad CRC was seen.

        After a bad-CRC frame the deadline shrinks to a short settle time: the rest of a
        noisy burst may still hold the real frame, but a full timeout would only delay the
        retry.
        """
        decoder = self._new_decoder()
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
                if self._for_us(item):
                    return item, saw_bad_crc


@dataclass
class LinkExchange(abc.ABC):
    """One request and its valid reply. `ack()` acknowledges the reply, once, and only
    when the protocol wants this reply acknowledged (`wants_ack`). It exists only for a
    CRC-valid frame, so a damaged frame can never be acknowledged."""

    command: int
    reply: Any
    _link: FrameLink[Any] = field(repr=False)
    acked: bool = False

    @property
    @abc.abstractmethod
    def wants_ack(self) -> bool:
        """Whether the protocol acknowledges this reply at all."""

    @property
    def needs_ack(self) -> bool:
        return self.wants_ack and not self.acked

    def ack(self) -> None:
        if self.needs_ack:
            self._link.send_ack()
            self.acked = True
