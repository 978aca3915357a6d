"""Notice a broker session that takes the terminal's publishes but no longer delivers
the desk's acks, and say when to start that session afresh.

Seen on NATS: a JetStream consumer behind the terminal's `ack` subscription is lost or
stuck (after a cluster's nodes were all killed, on 2.12 and 2.14 a few terminals' acks
never came back; a deleted consumer does the same on every release). The connection
stays up, PUBACKs keep coming, the desk stores and acks every payment, and the acks
wait in a stream nothing reads. A reconnect with the same session does not help; a
clean session, which makes the subscriptions and their consumers again, does
(docs/mqtt.md "Ack watch").

The same signs come from a desk that is down; a reset costs that terminal two connects
and nothing else (its session held nothing undelivered while it was connected), so the
watch waits `stall_s`, jittered, and doubles the wait after each reset that brought no
ack, up to MAX_FACTOR times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

MAX_FACTOR = 8  # the longest wait, in stall periods: the desk down for hours costs little
JITTER = 0.5  # each wait is stall_s·2ⁿ·U(1, 1 + JITTER): a fleet does not reset together


class AckWatch:
    """Fed by the sync worker: `connected`, `taken` (a record batch PUBACKed), `acked`
    (a signed desk ack arrived); `due()` says a reset is called for. `stall_s` 0: off."""

    def __init__(
        self,
        stall_s: float,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[float, float], float] | None = None,
    ) -> None:
        if stall_s < 0:
            raise ValueError("stall_s must be 0 (off) or more")
        self.stall_s = stall_s
        self._clock = clock
        self._uniform = rng or random.SystemRandom().uniform
        self.factor = 1  # doubles after each reset that no ack followed
        self.resets = 0
        self._taken_since: float | None = None  # first PUBACK not followed by an ack
        self._wait = self._draw()

    def _draw(self) -> float:
        return self.stall_s * self.factor * self._uniform(1.0, 1.0 + JITTER)

    def connected(self) -> None:
        """A new connection: what the last one saw says nothing about this one."""
        self._taken_since = None

    def taken(self) -> None:
        if self._taken_since is None:
            self._taken_since = self._clock()

    def acked(self) -> None:
        """The path from the desk works: forget the stall and the escalation."""
        self._taken_since = None
        if self.factor != 1:
            self.factor = 1
            self._wait = self._draw()

    @property
    def next_wait_s(self) -> float:
        return self._wait

    def waited_s(self) -> float:
        """How long publishes have been taken with no ack since (0: not waiting)."""
        return 0.0 if self._taken_since is None else self._clock() - self._taken_since

    def due(self) -> bool:
        return self.stall_s > 0 and self._taken_since is not None and (
            self._clock() - self._taken_since >= self._wait)

    def reset_started(self) -> None:
        self.resets += 1
        self._taken_since = None
        self.factor = min(MAX_FACTOR, self.factor * 2)
        self._wait = self._draw()
