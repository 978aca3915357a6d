"""CashCode CCNET bill-validator driver (docs/protocols/ccnet.md).

Layers, one concept per module: `crc` and `frame` (bytes), `replies` and `billtable`
(meaning of a reply in the context of its request), `states` (Z1 codes), `link`
(one request on the line, ACK/NAK, retries), `device` (the `BillAcceptor` the engine uses),
`factory` (built from configuration words), `probe` (identification without side effects).
The parts ID-003 does alike live in drivers/ (`framing`, `frame_link`, `acceptor_base`,
`acceptor_timing`, `acceptor_profiles`, `codes`, `bill_cache`).
"""

from drivers.ccnet.device import CcnetAcceptor
from drivers.ccnet.factory import build_ccnet_acceptor
from drivers.ccnet.timing import CcnetTiming

__all__ = ["CcnetAcceptor", "CcnetTiming", "build_ccnet_acceptor"]
