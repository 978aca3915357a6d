"""CCNET frames: building them and finding them in a byte stream (ccnet.md, "Frame layout").

`FrameDecoder` is fed whatever the port returned and hands back frames and discarded
bytes; the resynchronising search is `drivers.framing`, shared with ID-003. A frame whose
CRC fails is reported (so the link can NAK it) but never returned as a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.ccnet.crc import crc_bytes
from drivers.ccnet.protocol import (
    HEADER_LEN,
    MAX_FRAME_LEN,
    MAX_PAYLOAD_LEN,
    MIN_FRAME_LEN,
    SYNC,
    Address,
)
from drivers.framing import Discarded, DiscardReason, FrameLayout, StreamDecoder

__all__ = ["LAYOUT", "Decoded", "DiscardReason", "Discarded", "Frame", "FrameDecoder",
           "build_frame"]

_ADR_POS = 1
_LNG_POS = 2
_CRC_LEN = 2


def build_frame(command: int, data: bytes = b"", address: int = Address.BILL_VALIDATOR) -> bytes:
    """SYNC | ADR | LNG | CMD | DATA | CRC (low byte first). LNG counts the whole frame."""
    if len(data) + 1 > MAX_PAYLOAD_LEN:
        raise ValueError(f"CCNET data too long for a short frame: {len(data)} bytes")
    length = HEADER_LEN + 1 + len(data) + _CRC_LEN
    body = bytes((SYNC, address, length, command)) + data
    return body + crc_bytes(body)


@dataclass(frozen=True)
class Frame:
    """A CRC-valid frame. `payload` is CMD+DATA (for a reply, CMD is the first data byte)."""

    raw: bytes

    @property
    def address(self) -> int:
        return self.raw[_ADR_POS]

    @property
    def payload(self) -> bytes:
        return self.raw[HEADER_LEN:-_CRC_LEN]


Decoded = Frame | Discarded

LAYOUT = FrameLayout(sync=SYNC, lng_pos=_LNG_POS, min_len=MIN_FRAME_LEN, max_len=MAX_FRAME_LEN)


class FrameDecoder(StreamDecoder[Frame]):
    """Streaming CCNET frame finder: `drivers.framing.StreamDecoder` on CCNET's layout."""

    def __init__(self) -> None:
        super().__init__(LAYOUT, Frame)
