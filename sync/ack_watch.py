"""Notice a broker session that takes the terminal's publishes but no longer delivers
the desk's acks, and say when to start that session afresh.

Seen on NATS: a JetStream consumer behind the terminal's `ack` subscription is lost or
stuck (after a cluster's nodes were all killed, on 2.12, 2.14 and 2.15 some benchmark
terminals' acks never came back, at least part of them through a refused subscription
the simulator ignored and the agent does not: sync/connection.py's subscribe_refused; a
deleted consumer does the same on every release). The connection
stays up, PUBACKs keep coming, the desk stores and acks every payment, and the acks
wait in a stream nothing reads. A reconnect with the same session does not help; a
clean session, which makes the subscriptions and their consumers again, does
(docs/mqtt.md "Ack watch").

So the wait outlives a reconnect that kept the session (`session_present`): a terminal
whose link drops more often than `stall_s` would otherwise never reset a session that
stays broken. Only connected time counts, so a long outage does not make a whole fleet
reset the moment it is back: the acks it held get their chance first. A connection
with a new session (its subscriptions made anew) starts the wait afresh.

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
    """Fed by the sync worker: `connected`, `disconnected`, `taken` (a record batch
    PUBACKed), `acked` (a signed desk ack arrived); `due()` says a reset is called for.
    `stall_s` 0: off."""

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
        # the wait, in connected seconds: those of earlier connections of this session
        # (None: not waiting), plus the current one's since `_counting_from` (None: not
        # waiting, or offline)
        self._waited_before: float | None = None
        self._counting_from: float | None = None
        self._online = True  # until told otherwise: a PUBACK means a connection
        self._wait = self._draw()

    def _draw(self) -> float:
        return self.stall_s * self.factor * self._uniform(1.0, 1.0 + JITTER)

    def connected(self, session_present: bool) -> None:
        """A new connection. `session_present`: the broker kept the session, and with it
        whatever broke its ack delivery, so the wait goes on; else it starts afresh."""
        self.disconnected()  # a connection that ended unreported counts up to here
        self._online = True
        if not session_present:
            self._stop_waiting()
        elif self._waited_before is not None:
            self._counting_from = self._clock()

    def disconnected(self) -> None:
        """The clock stops: time offline says nothing about the session's deliveries."""
        if self._online and self._counting_from is not None and self._waited_before is not None:
            self._waited_before += self._clock() - self._counting_from
        self._counting_from = None
        self._online = False

    def taken(self) -> None:
        if self._waited_before is None:
            self._waited_before = 0.0
            self._counting_from = self._clock() if self._online else None

    def acked(self) -> None:
        """The path from the desk works: forget the stall and the escalation."""
        self._stop_waiting()
        if self.factor != 1:
            self.factor = 1
            self._wait = self._draw()

    def _stop_waiting(self) -> None:
        self._waited_before = self._counting_from = None

    @property
    def next_wait_s(self) -> float:
        return self._wait

    def waited_s(self) -> float:
        """Connected seconds since publishes were taken with no ack (0: not waiting)."""
        if self._waited_before is None:
            return 0.0
        running = 0.0 if self._counting_from is None else self._clock() - self._counting_from
        return self._waited_before + running

    def due(self) -> bool:
        return (self.stall_s > 0 and self._waited_before is not None
                and self.waited_s() >= self._wait)

    def reset_started(self) -> None:
        self.resets += 1
        self._stop_waiting()
        self.factor = min(MAX_FACTOR, self.factor * 2)
        self._wait = self._draw()
