"""Finding frames in a byte stream, for both acceptor protocols (docs/protocols/
ccnet.md and id003.md, "Frame layout").

CCNET and ID-003 frame alike: a SYNC byte, a one-byte LNG that counts the whole frame, a
CRC-16/KERMIT over everything before it (`drivers.crc16`). They differ only in the SYNC
value, where LNG sits and the length limits, which is what a `FrameLayout` names; each
protocol's `frame` module builds its own `Frame` class and `FrameDecoder` on this one.

`StreamDecoder` is fed whatever the port returned and hands back frames and discarded
bytes in arrival order. It never raises on garbage: the line is noisy and the link must
keep running. It resynchronises on SYNC, checks LNG against the protocol's limits before
trusting it, and looks ahead for a later valid frame rather than waiting for bytes that a
garbage SYNC/LNG pair promised but that will never come. A frame whose CRC fails is
reported (so the link can NAK it or ask again) but never returned as a frame.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from drivers.crc16 import frame_crc_ok


class RawFrame(Protocol):
    """What every protocol's `Frame` has: the CRC-valid bytes it was found as."""

    @property
    def raw(self) -> bytes: ...


FrameT = TypeVar("FrameT", bound=RawFrame)


@dataclass(frozen=True)
class FrameLayout:
    """Where a protocol's frame keeps what the decoder needs."""

    sync: int  # first byte of every frame
    lng_pos: int  # offset of the LNG byte (the whole frame's length)
    min_len: int  # the shortest LNG that can be a frame
    max_len: int  # the longest LNG the protocol speaks


class DiscardReason(enum.Enum):
    GARBAGE = "garbage"  # bytes outside any frame (no SYNC, impossible LNG)
    BAD_CRC = "bad crc"  # frame-shaped, complete, CRC wrong: the link NAKs or asks again


@dataclass(frozen=True)
class Discarded:
    raw: bytes
    reason: DiscardReason


class StreamDecoder(Generic[FrameT]):
    """Streaming frame finder. Feed bytes, get frames and discards in arrival order."""

    def __init__(self, layout: FrameLayout, make_frame: Callable[[bytes], FrameT]) -> None:
        self._buf = bytearray()
        self._layout = layout
        self._make_frame = make_frame

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[FrameT | Discarded]:
        self._buf.extend(data)
        sync, lng_pos = self._layout.sync, self._layout.lng_pos
        out: list[FrameT | Discarded] = []
        while self._buf:
            start = self._buf.find(sync)
            if start < 0:
                out.append(self._discard(len(self._buf), DiscardReason.GARBAGE))
                break
            if start > 0:
                out.append(self._discard(start, DiscardReason.GARBAGE))
            if len(self._buf) <= lng_pos:
                break
            length = self._buf[lng_pos]
            if not self._plausible(length):
                out.append(self._discard(1, DiscardReason.GARBAGE))
                continue
            if len(self._buf) < length:
                later = self._later_valid_frame()
                if later is None:
                    break  # wait for the rest
                out.append(self._discard(later, DiscardReason.GARBAGE))
                continue
            candidate = bytes(self._buf[:length])
            if frame_crc_ok(candidate):
                del self._buf[:length]
                out.append(self._make_frame(candidate))
                continue
            later = self._later_valid_frame()
            if later is not None and later < length:
                # A garbage SYNC swallowed the start of a real frame: keep the real one.
                out.append(self._discard(later, DiscardReason.GARBAGE))
            else:
                out.append(self._discard(length, DiscardReason.BAD_CRC))
        return out

    def flush(self) -> list[Discarded]:
        """Give up on a partial frame (end of an exchange): report it as garbage."""
        if not self._buf:
            return []
        return [self._discard(len(self._buf), DiscardReason.GARBAGE)]

    def _plausible(self, length: int) -> bool:
        return self._layout.min_len <= length <= self._layout.max_len

    def _discard(self, count: int, reason: DiscardReason) -> Discarded:
        raw = bytes(self._buf[:count])
        del self._buf[:count]
        return Discarded(raw, reason)

    def _later_valid_frame(self) -> int | None:
        """Offset of the first complete CRC-valid frame starting after offset 0, if any."""
        sync, lng_pos = self._layout.sync, self._layout.lng_pos
        pos = self._buf.find(sync, 1)
        while pos >= 0:
            if pos + lng_pos < len(self._buf):
                length = self._buf[pos + lng_pos]
                end = pos + length
                if (
                    self._plausible(length)
                    and end <= len(self._buf)
                    and frame_crc_ok(bytes(self._buf[pos:end]))
                ):
                    return pos
            pos = self._buf.find(sync, pos + 1)
        return None
