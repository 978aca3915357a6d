"""CRC-16/KERMIT, shared by CCNET and JCM ID-003 (docs/protocols/ccnet.md, "CRC"): poly
0x8408 reflected, init 0, no final XOR, carried on the wire low byte first.

Catalogue check value: crc16(b"123456789") == 0x2189. A CRC over a whole valid frame
(CRC bytes included) is zero, which is how `frame_crc_ok` checks a frame without slicing
it. The protocols differ only in framing (SYNC, LNG position), never in the CRC.
"""

from __future__ import annotations

POLYNOMIAL = 0x8408
INITIAL = 0x0000
_BYTE_VALUES = 256
_BITS_PER_BYTE = 8
_LOW_BYTE = 0xFF
CRC_LEN = 2


def _make_table() -> tuple[int, ...]:
    table = []
    for value in range(_BYTE_VALUES):
        crc = value
        for _ in range(_BITS_PER_BYTE):
            crc = (crc >> 1) ^ POLYNOMIAL if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16(data: bytes, crc: int = INITIAL) -> int:
    """CRC-16/KERMIT of `data`, table-driven (one lookup per byte)."""
    for byte in data:
        crc = (crc >> _BITS_PER_BYTE) ^ _TABLE[(crc ^ byte) & _LOW_BYTE]
    return crc


def crc_bytes(data: bytes) -> bytes:
    """The two CRC bytes to append to `data`, in wire order (low byte first)."""
    return crc16(data).to_bytes(CRC_LEN, "little")


def frame_crc_ok(frame: bytes) -> bool:
    """True when the trailing two bytes are the CRC of everything before them."""
    return len(frame) > CRC_LEN and crc16(frame) == 0
