"""Reconnect delays with full jitter.

paho's own backoff doubles deterministically (1, 2, 4 … s), so a fleet that lost the
broker at once reconnects in synchronised waves. Here each delay is drawn uniformly from
[min, cap] where cap doubles per failed attempt up to `max_s` ("full jitter"); it resets
after a successful CONNACK.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        min_s: float = 1.0,
        max_s: float = 60.0,
        rng: Callable[[float, float], float] | None = None,
    ) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError("need 0 < min_s <= max_s")
        self.min_s = min_s
        self.max_s = max_s
        self._uniform = rng or random.SystemRandom().uniform
        self.attempt = 0

    def cap(self) -> float:
        return min(self.max_s, self.min_s * (2 ** min(self.attempt + 1, 32)))

    def next_delay(self) -> float:
        """The delay before the next attempt; counts the attempt."""
        delay = self._uniform(self.min_s, self.cap())
        self.attempt += 1
        return max(self.min_s, min(delay, self.max_s))

    def reset(self) -> None:
        self.attempt = 0
