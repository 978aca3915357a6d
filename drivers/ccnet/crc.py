"""CRC-16/KERMIT as CCNET uses it (docs/protocols/ccnet.md, "CRC"): the same routine as
ID-003 (drivers/crc16.py)."""

from drivers.crc16 import INITIAL, POLYNOMIAL, crc16, crc_bytes, frame_crc_ok

__all__ = ["INITIAL", "POLYNOMIAL", "crc16", "crc_bytes", "frame_crc_ok"]
