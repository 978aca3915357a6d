"""The byte side of an acceptor link, shared by CCNET and ID-003 (one request at a time).

Both protocols are half-duplex with one outstanding request: the host keeps a gap between
its frames and reads until a CRC-valid reply arrives or the deadline passes. `FrameLink`
does that and nothing protocol-specific; each protocol's link says what a damaged reply
gets (CCNET NAKs it, ID-003 just asks again), which valid reply means "say it again",
which frames can answer which command, and what to do with a frame that answers none.

What a unit does after a host NAK, or when it answers late, is not settled (some units
retransmit their last reply, possibly late; some stay silent). The link is correct either
way because of four rules:

1. Nothing valid is thrown away unread. One decoder lives as long as the link, so bytes
   that follow a frame in the same read, or that arrive between exchanges, are decoded
   later, never discarded. Every decoded item goes to the raw frame log when it is
   decoded (arrival order, arrival time): valid frames as frames, the rest with the
   reason it was dropped.
2. A reply is matched to the command it answers. Before a new command is written (after
   the gap between host frames), whatever arrived is late: it answers an earlier command,
   never this one; the protocol link decides what it means (`_late`). A frame that
   cannot answer the current command (`_answers`: a POLL state while STACK waits for an
   ACK) is late too, whenever it arrives.
3. After an attempt that may still be answered (a bad-CRC reply the protocol rejected
   with a NAK, which a unit may retransmit; or no reply, which may come late) the link
   reads before it sends again - after a NAK for up to one response timeout, otherwise
   for the gap between host frames: a valid answer then answers the original command,
   which is not sent again. When it does send again, it reads until the deadline and
   takes the LAST answer-shaped frame: on a first-in-first-out line the late reply to
   the earlier attempt comes before the answer to the new one. A damaged frame after
   the last valid one means the unit's last word was unreadable: that attempt failed
   too. This costs up to two response timeouts, and only after a fault.
4. An acknowledgement goes only to the unit's last frame: if a valid frame arrived after
   the reply being acknowledged, the ACK is not sent (the unit repeats its report, which
   the host reads again), because the unit would take the ACK as meant for the newer
   frame and could drop a report the host has not processed.
"""

from __future__ import annotations

import abc
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol

import serial

from drivers.clock import SYSTEM_CLOCK, Clock
from drivers.framelog import FrameLog
from drivers.framing import Discarded, DiscardReason, FrameT, StreamDecoder

log = logging.getLogger(__name__)


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


BAD_CRC = Discarded(b"", DiscardReason.BAD_CRC)
"""What `_next` returns for a complete frame whose CRC failed (already logged)."""


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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._port = port
        self._clock = clock
        self._timing = timing
        self._log = frame_log
        self._decoder = new_decoder()
        self._inbox: collections.deque[FrameT | Discarded] = collections.deque()
        self._last_tx = 0.0
        self._last_rx = 0.0

    # -- what a protocol supplies --------------------------------------------------------

    def _for_us(self, frame: FrameT) -> bool:
        """False for a valid frame meant for another peripheral on a shared line."""
        return True

    def _answers(self, command: int, frame: FrameT) -> bool:
        """Whether `frame` can be the reply to `command` at all (by its shape)."""
        return True

    def _late(self, frame: FrameT, command: int) -> None:
        """A valid frame that is not the answer to `command` (already in the frame log)."""
        log.info("late reply %s, not the answer to 0x%02X", frame.raw.hex(" "), command)

    def _reject_bad_reply(self) -> bool:
        """Called after a bad-CRC reply; True when the unit may still send it again."""
        return False

    def _says_again(self, frame: FrameT, command: int) -> str | None:
        """Why a valid reply means "send it again" (the unit NAKed us), else None."""
        return None

    # -- the exchange ----------------------------------------------------------------------

    def _transact(self, command: int, frame: bytes, timeout_s: float) -> FrameT:
        """Send `frame` until a valid answer to `command` comes; at most `attempts` sends."""
        problem = "no reply"
        pending = False  # an earlier attempt may still be answered (late or retransmitted)
        listen_s = 0.0
        for attempt in range(1, self._timing.attempts + 1):
            answer = self._before_send(command, pending, listen_s)
            bad = False
            if answer is None:
                self._write(frame)
                answer, bad = self._receive(command, timeout_s, linger=pending)
            if answer is not None:
                again = self._says_again(answer, command)
                if again is None:
                    return answer
                problem, pending, listen_s = again, False, 0.0
            elif bad:
                problem = "bad CRC"
                pending = self._reject_bad_reply()
                listen_s = timeout_s if pending else 0.0
            else:
                problem, pending, listen_s = "no reply", True, 0.0
            log.debug("%s to 0x%02X (attempt %d)", problem, command, attempt)
        raise NoReply(
            f"{problem} to command 0x{command:02X} after {self._timing.attempts} attempts"
        )

    def _before_send(self, command: int, pending: bool, listen_s: float) -> FrameT | None:
        """Wait out the gap between host frames (and `listen_s`), reading the line.

        Everything that arrives now is late for a new command. With `pending`, an
        answer-shaped frame is the reply to the earlier attempt of this same command (a
        retransmission after our NAK, or a late reply): it is returned and the command is
        not sent again. A damaged frame here is only logged; sending again settles it.
        """
        until = max(self._last_tx + self._timing.command_gap_s, self._clock.monotonic() + listen_s)
        while (item := self._next(until)) is not None:
            if isinstance(item, Discarded):
                continue
            if pending and self._answers(command, item):
                return item
            self._late(item, command)
        return None

    def _receive(self, command: int, timeout_s: float, linger: bool
                 ) -> tuple[FrameT | None, bool]:
        """Read the reply to the command just sent; (answer, damaged frame seen last).

        Without `linger` the first answer-shaped frame is the answer and what follows
        stays queued for later. With `linger` (an earlier attempt may still be answered)
        the link reads until the deadline and the last answer-shaped frame wins; the
        earlier ones are late. After a bad-CRC frame the deadline shrinks to a short
        settle time: the rest of a noisy burst may still hold the real frame, but a full
        timeout would only delay the retry.
        """
        deadline = self._clock.monotonic() + timeout_s
        answer: FrameT | None = None
        bad = False
        while (item := self._next(deadline)) is not None:
            if isinstance(item, Discarded):
                bad = True
                deadline = min(deadline, self._clock.monotonic() + self._timing.settle_s)
                continue
            if not self._answers(command, item):
                self._late(item, command)
                continue
            if not linger:
                return item, bad
            if answer is not None:
                self._late(answer, command)
            answer, bad = item, False
        if answer is not None and bad:
            self._late(answer, command)  # the unit's last word was unreadable
            answer = None
        return answer, bad

    # -- acknowledgements -------------------------------------------------------------------

    def take_late(self) -> list[Any]:
        """Replies that answered an earlier request, oldest first (none, unless the
        protocol's link keeps them: `drivers.ccnet.link`)."""
        return []

    def send_ack(self) -> bool:
        """Acknowledge the last reply (the unit sends nothing back); False when not sent
        because the unit has sent another valid frame since (rule 4 above)."""
        self._wait_gap()
        self._read_waiting()
        if any(not isinstance(item, Discarded) for item in self._inbox):
            log.info("not acknowledging: the unit sent another frame after the reply")
            return False
        self._write(self.ACK_FRAME)
        return True

    def _send(self, frame: bytes) -> None:
        """Write one host frame that expects no reply (NAK), after the gap."""
        self._wait_gap()
        self._write(frame)

    # -- the line --------------------------------------------------------------------------

    def _wait_gap(self) -> None:
        gap = self._last_tx + self._timing.command_gap_s - self._clock.monotonic()
        if gap > 0:
            self._clock.sleep(gap)

    def _write(self, frame: bytes) -> None:
        try:
            self._port.write(frame)
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"write failed: {exc}") from exc
        self._last_tx = self._clock.monotonic()
        self._log.tx(frame)

    def _next(self, deadline: float) -> FrameT | Discarded | None:
        """The next valid frame for us, or `BAD_CRC`, or None at `deadline`.

        Reads at least once even when the deadline has passed, so what is already
        waiting is never overlooked. A partial frame is kept across calls (its rest may
        still come) until the line has been quiet for the settle time; then it is garbage.
        """
        while True:
            if self._inbox:
                return self._inbox.popleft()
            got = self._read_waiting()
            if self._inbox:
                continue
            now = self._clock.monotonic()
            if now >= deadline:
                if self._decoder.pending and now - self._last_rx >= self._timing.settle_s:
                    for item in self._decoder.flush():
                        self._log.rx(item.raw, item.reason.value)
                return None
            if not got:
                self._read(1)  # blocks for at most the port's short read timeout

    def _read_waiting(self) -> bool:
        """Decode whatever the port holds now, without waiting; True if bytes came."""
        try:
            waiting = self._port.in_waiting
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"read failed: {exc}") from exc
        return self._read(waiting) if waiting > 0 else False

    def _read(self, size: int) -> bool:
        try:
            chunk = self._port.read(size)
        except (serial.SerialException, OSError) as exc:
            raise PortError(f"read failed: {exc}") from exc
        if not chunk:
            return False
        self._last_rx = self._clock.monotonic()
        for item in self._decoder.feed(chunk):
            if isinstance(item, Discarded):
                self._log.rx(item.raw, item.reason.value)
                if item.reason is DiscardReason.BAD_CRC:
                    self._inbox.append(BAD_CRC)
                continue
            self._log.rx(item.raw)
            if self._for_us(item):
                self._inbox.append(item)
        return True


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
        """Acknowledge, unless a newer frame came in (then the unit repeats its report)."""
        if self.needs_ack:
            self.acked = self._link.send_ack()
