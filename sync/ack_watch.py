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

The desk's beat (sync/desk_beat.py) tells the two apart. Once a beat from a worker that
stores this terminal's records has been heard (`heard`), a second wait, `heard_stall_s`,
counts only connected time in which the beats kept coming: the desk is up and taking
records, so acks that still do not come mean this session. That is the faster cure. And
while the desk was heard within the longest fallback wait (stall_s·MAX_FACTOR), the
first rule holds off: a desk that went silent is a desk that is away, and a reset would
not bring its acks. A desk silent for longer than that (stopped for good, or one that
never beats: an older desk) leaves the first rule to judge as before. Both waits share
the jitter and the doubling.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

MAX_FACTOR = 8  # the longest wait, in stall periods: the desk down for hours costs little
JITTER = 0.5  # each wait is stall_s·2ⁿ·U(1, 1 + JITTER): a fleet does not reset together
# a beat counts the time since the one before it, at most this many beat periods: one lost
# beat still counts, a desk silent for long does not
HEARD_SPAN = 2.0


class AckWatch:
    """Fed by the sync worker: `connected`, `disconnected`, `taken` (a record batch
    PUBACKed), `acked` (a signed desk ack arrived), `heard` (a desk beat for this
    terminal); `due()` says a reset is called for. `stall_s` 0: the first rule off;
    `heard_stall_s` 0: the beats are not used."""

    def __init__(
        self,
        stall_s: float,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[float, float], float] | None = None,
        heard_stall_s: float = 0.0,
    ) -> None:
        if stall_s < 0 or heard_stall_s < 0:
            raise ValueError("stall_s and heard_stall_s must be 0 (off) or more")
        self.stall_s = stall_s
        self.heard_stall_s = heard_stall_s
        # connected time with the desk heard, while waiting; counted beat by beat from
        # `_heard_mark` (None: no beat yet on this connection since the wait began)
        self._heard_waited = 0.0
        self._heard_mark: float | None = None
        self._heard_at: float | None = None  # the last beat, ever
        self.beats = 0  # heard, ever
        self._beat_every = 0.0
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
        self._draw()

    def _draw(self) -> None:
        jitter = self._uniform(1.0, 1.0 + JITTER)
        self._wait = self.stall_s * self.factor * jitter
        self._heard_wait = self.heard_stall_s * self.factor * jitter

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
        self._heard_mark = None
        self._online = False

    def taken(self) -> None:
        if self._waited_before is None:
            now = self._clock()
            self._waited_before = 0.0
            self._counting_from = now if self._online else None
            self._heard_waited = 0.0
            self._heard_mark = now if self._online and self._hears(now) else None

    def heard(self, every_s: float) -> None:
        """A beat from a worker that stores this terminal's records (sync/desk_beat.py),
        sent every `every_s`."""
        now = self._clock()
        if self._online and self._waited_before is not None:
            if self._heard_mark is not None:
                self._heard_waited += min(now - self._heard_mark, every_s * HEARD_SPAN)
            self._heard_mark = now
        self._heard_at, self._beat_every = now, every_s
        self.beats += 1

    def _hears(self, now: float) -> bool:
        """The desk was heard within its last beat period or two."""
        return (self._heard_at is not None
                and now - self._heard_at <= self._beat_every * HEARD_SPAN)

    def desk_holds(self) -> bool:
        """The desk was heard recently enough that its silence means it is away: the
        first rule waits (the beats judge the session)."""
        return (self.heard_stall_s > 0 and self._heard_at is not None
                and self._clock() - self._heard_at < self.stall_s * MAX_FACTOR)

    def acked(self) -> None:
        """The path from the desk works: forget the stall and the escalation."""
        self._stop_waiting()
        if self.factor != 1:
            self.factor = 1
            self._draw()

    def _stop_waiting(self) -> None:
        self._waited_before = self._counting_from = None
        self._heard_waited, self._heard_mark = 0.0, None

    @property
    def next_wait_s(self) -> float:
        """The wait that judges now: the beats' while the desk holds, else the first."""
        return self._heard_wait if self.desk_holds() else self._wait

    def heard_waited_s(self) -> float:
        """Connected seconds with the desk heard since publishes were taken with no ack."""
        return self._heard_waited

    def waited_s(self) -> float:
        """Connected seconds since publishes were taken with no ack (0: not waiting)."""
        if self._waited_before is None:
            return 0.0
        running = 0.0 if self._counting_from is None else self._clock() - self._counting_from
        return self._waited_before + running

    def due(self) -> bool:
        if self._waited_before is None:
            return False
        if self.heard_stall_s > 0 and self._heard_waited >= self._heard_wait:
            return True  # the desk beats and stores, and our acks do not come
        return (self.stall_s > 0 and self.waited_s() >= self._wait
                and not self.desk_holds())

    def reset_started(self) -> None:
        self.resets += 1
        self._stop_waiting()
        self.factor = min(MAX_FACTOR, self.factor * 2)
        self._draw()
