"""Time as a seam: the line thread and the link read and wait on a `Clock`.

Production uses `SYSTEM_CLOCK` (monotonic time, real waits). Protocol tests give the
driver, the link and a simulated unit one `ManualClock`: time then moves only when code
waits on it, so a test exercises every timeout of the protocol without real sleeps and
without depending on how fast the machine is.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds, and the two ways the drivers wait."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to `seconds` for `event`; True when it is set."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(seconds, 0.0))


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """Virtual time for tests: it moves only by `advance`, and a wait moves it to the
    wait's end at once (an event already set ends the wait before any time passes).

    Every party sharing it (the driver's line thread, the link, the simulated unit)
    sees the same time, so the protocol's timeouts keep their order while no real time
    passes. Thread-safe.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"time does not go back ({seconds} s)")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.sleep(seconds)
        return event.is_set()
