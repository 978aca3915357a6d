"""ID-003 timing: the same [timing] keys as CCNET, read and validated the same way.

Both acceptor protocols poll, wait for a reply, retry, reset and initialize; the keys
(`poll_ms`, `response_timeout_ms`, `reset_wait_ms`, `stuck_state_s`, ...) mean the same
thing for both, so the reader is shared rather than copied: `Id003Timing.from_profile` is
`drivers.acceptor_timing.AcceptorTiming.from_profile` building this class. Errors name
the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.acceptor_timing import AcceptorTiming
from drivers.frame_link import LinkTiming

__all__ = ["Id003Timing", "LinkTiming"]


@dataclass(frozen=True)
class Id003Timing(AcceptorTiming):
    """`poll_s` 100-200 ms is what public drivers use (lamassu 100, py-id003 200 "per
    ID-003 spec") [S]; `ident_timeout_s` covers VERSION and CURRENCY ASSIGN replies."""
