"""ID-003 frames: building them and finding them in a byte stream (§2).

`FrameDecoder` is fed whatever the port returned and hands back frames and discarded
bytes in arrival order. It never raises on garbage: the line is noisy and the link must
keep running. It resynchronises on SYNC (0xFC), checks LNG against the protocol's limits
before trusting it, and looks ahead for a later valid frame rather than waiting for bytes
that a garbage SYNC/LNG pair promised but that will never come. A frame whose CRC fails
is reported (the link retries the request) but never returned as a frame.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.crc16 import crc_bytes, frame_crc_ok
from drivers.id003.protocol import (
    CRC_LEN,
    HEADER_LEN,
    MAX_DATA_LEN,
    MAX_FRAME_LEN,
    MIN_FRAME_LEN,
    SYNC,
)

_LNG_POS = 1
_CODE_POS = 2


def build_frame(command: int, data: bytes = b"") -> bytes:
    """SYNC | LNG | CMD | DATA | CRC (low byte first). LNG counts the whole frame."""
    if not 0 <= command <= 0xFF:
        raise ValueError(f"ID-003 command code out of range: {command}")
    if len(data) > MAX_DATA_LEN:
        raise ValueError(f"ID-003 data too long for one frame: {len(data)} bytes")
    body = bytes((SYNC, MIN_FRAME_LEN + len(data), command)) + data
    return body + crc_bytes(body)


@dataclass(frozen=True)
class Frame:
    """A CRC-valid frame. `code` is CMD (a command, a status or a reply code)."""

    raw: bytes

    @property
    def code(self) -> int:
        return self.raw[_CODE_POS]

    @property
    def data(self) -> bytes:
        return self.raw[_CODE_POS + 1 : -CRC_LEN]

    @property
    def payload(self) -> bytes:
        """CMD + DATA, what `replies.parse_reply` interprets."""
        return self.raw[HEADER_LEN:-CRC_LEN]


class DiscardReason(enum.Enum):
    GARBAGE = "garbage"  # bytes outside any frame (no SYNC, impossible LNG)
    BAD_CRC = "bad crc"  # frame-shaped, complete, CRC wrong: the link asks again


@dataclass(frozen=True)
class Discarded:
    raw: bytes
    reason: DiscardReason


Decoded = Frame | Discarded


class FrameDecoder:
    """Streaming frame finder. Feed bytes, get frames and discards in arrival order."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Decoded]:
        self._buf.extend(data)
        out: list[Decoded] = []
        while self._buf:
            start = self._buf.find(SYNC)
            if start < 0:
                out.append(self._discard(len(self._buf), DiscardReason.GARBAGE))
                break
            if start > 0:
                out.append(self._discard(start, DiscardReason.GARBAGE))
            if len(self._buf) <= _LNG_POS:
                break
            length = self._buf[_LNG_POS]
            if not MIN_FRAME_LEN <= length <= MAX_FRAME_LEN:
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
                out.append(Frame(candidate))
                continue
            later = self._later_valid_frame()
            if later is not None and later < length:
                # A garbage SYNC swallowed the start of a real frame: keep the real one.
                out.append(self._discard(later, DiscardReason.GARBAGE))
            else:
                out.append(self._discard(length, DiscardReason.BAD_CRC))
        return out

    def flush(self) -> list[Decoded]:
        """Give up on a partial frame (end of an exchange): report it as garbage."""
        if not self._buf:
            return []
        return [self._discard(len(self._buf), DiscardReason.GARBAGE)]

    def _discard(self, count: int, reason: DiscardReason) -> Discarded:
        raw = bytes(self._buf[:count])
        del self._buf[:count]
        return Discarded(raw, reason)

    def _later_valid_frame(self) -> int | None:
        """Offset of the first complete CRC-valid frame starting after offset 0, if any."""
        pos = self._buf.find(SYNC, 1)
        while pos >= 0:
            if pos + _LNG_POS < len(self._buf):
                length = self._buf[pos + _LNG_POS]
                end = pos + length
                if (
                    MIN_FRAME_LEN <= length <= MAX_FRAME_LEN
                    and end <= len(self._buf)
                    and frame_crc_ok(bytes(self._buf[pos:end]))
                ):
                    return pos
            pos = self._buf.find(SYNC, pos + 1)
        return None
