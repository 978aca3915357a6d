"""ID-003 frames: building them and finding them in a byte stream (id003.md, "Frame layout").

`FrameDecoder` is fed whatever the port returned and hands back frames and discarded
bytes in arrival order; the resynchronising search (SYNC 0xFC, LNG checked against the
protocol's limits before it is trusted) is `drivers.framing`, shared with CCNET. A frame
whose CRC fails is reported (the link retries the request) but never returned as a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.crc16 import crc_bytes
from drivers.framing import Discarded, DiscardReason, FrameLayout, StreamDecoder
from drivers.id003.protocol import (
    CRC_LEN,
    HEADER_LEN,
    MAX_DATA_LEN,
    MAX_FRAME_LEN,
    MIN_FRAME_LEN,
    SYNC,
)

__all__ = ["LAYOUT", "Decoded", "DiscardReason", "Discarded", "Frame", "FrameDecoder",
           "build_frame"]

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


Decoded = Frame | Discarded

LAYOUT = FrameLayout(sync=SYNC, lng_pos=_LNG_POS, min_len=MIN_FRAME_LEN, max_len=MAX_FRAME_LEN)


class FrameDecoder(StreamDecoder[Frame]):
    """Streaming ID-003 frame finder: `drivers.framing.StreamDecoder` on ID-003's layout."""

    def __init__(self) -> None:
        super().__init__(LAYOUT, Frame)
