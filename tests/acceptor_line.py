"""Line-level test helpers shared by the CCNET and ID-003 suites: a scripted serial port,
fast link timing, and the independent reference the frame fuzzers check against.

The reference CRC is computed bit by bit from the definition, not with the drivers'
table (drivers/crc16.py), so a wrong table cannot hide a wrong acceptance.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from drivers.frame_link import LinkTiming
from drivers.framing import Discarded

LINK_TIMING = LinkTiming(response_timeout_s=0.15, ident_timeout_s=0.3, attempts=3,
                         settle_s=0.01, command_gap_s=0.0)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_CHUNKED = 600
MAX_CUTS = 12
cuts = st.lists(st.integers(min_value=0, max_value=MAX_CHUNKED), max_size=MAX_CUTS)
"""Where a stream is cut into the chunks the decoder is fed."""

KERMIT_POLY = 0x8408
CRC_LEN = 2
_BITS = 8


def reference_crc(data: bytes) -> int:
    """CRC-16/KERMIT, bitwise, straight from the definition."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(_BITS):
            crc = (crc >> 1) ^ KERMIT_POLY if crc & 1 else crc >> 1
    return crc


def reference_crc_ok(frame: bytes) -> bool:
    """The trailing two bytes are the reference CRC of the rest, low byte first."""
    return reference_crc(frame[:-CRC_LEN]) == int.from_bytes(frame[-CRC_LEN:], "little")


def feed_chunked(decoder: Any, data: bytes, cut: list[int]) -> list[Any | Discarded]:
    """Everything `decoder` makes of `data` fed in the chunks `cut` describes, flushed."""
    out: list[Any | Discarded] = []
    points = sorted({c % (len(data) + 1) for c in cut} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        out.extend(decoder.feed(data[start:end]))
    out.extend(decoder.flush())
    return out


class ScriptedPort:
    """A port that answers each written frame with the next scripted reply (bytes or None).

    Frames in `SILENT` (the host's ACK, CCNET's NAK) get no answer, as on a real line.
    """

    SILENT: Collection[bytes] = ()

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = list(replies)
        self.written: list[bytes] = []
        self._rx = b""

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        out, self._rx = self._rx[:size], self._rx[size:]
        return out

    def write(self, data: bytes, /) -> int:
        self.written.append(data)
        if data not in self.SILENT and self.replies:
            reply = self.replies.pop(0)
            if reply is not None:
                self._rx += reply
        return len(data)

    def reset_input_buffer(self) -> None:
        self._rx = b""

    def close(self) -> None:
        pass
