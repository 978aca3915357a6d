"""CCNET timing: the shared acceptor [timing] keys (`drivers.acceptor_timing`).

Every value the driver waits on comes from here, so a test profile can run the whole
protocol at pty speed and a real profile at the device's pace. Errors name file and key.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.acceptor_timing import AcceptorTiming
from drivers.frame_link import LinkTiming

__all__ = ["CcnetTiming", "LinkTiming"]


@dataclass(frozen=True)
class CcnetTiming(AcceptorTiming):
    """CCNET reads exactly the shared keys; `BUSY_UNIT_S` polls come from the unit."""
