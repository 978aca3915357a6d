"""JCM ID-003 bill-acceptor driver (docs/protocols/id003.md): UBA, iVIZION and relatives.

Layers, one concept per module, as in drivers/ccnet: `frame` (bytes; the CRC-16/KERMIT is
the shared `drivers.crc16`), `replies`, `states` and `currency` (meaning of a reply in the
context of its request), `link` (one request on the line, retries, the ACK of VEND VALID),
`eventkeys` and `marker` (one credit per bill, M2/M6), `device` (the `BillAcceptor` the
engine uses), `factory` (built from configuration words), `probe` (identification
without side effects). What both protocols do alike is shared, not copied: the stream
decoder (`drivers.framing`), the link's byte side (`drivers.frame_link`), the line thread
(`drivers.acceptor_base`), timing, profile choice and the simulator's pty side.
"""

from drivers.id003.device import Id003Acceptor
from drivers.id003.factory import build_id003_acceptor
from drivers.id003.timing import Id003Timing

__all__ = ["Id003Acceptor", "Id003Timing", "build_id003_acceptor"]
