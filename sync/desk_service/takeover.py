"""Partition takeover: when the worker of a partition goes quiet, the live ones share its
terminals between them, storing and acknowledging them too, until it is back.

Desk workers started with `--partition K/N` (MQTT 3.1.1: no shared subscriptions) share
the database. Each writes its row of `desk_workers` every `beat_s` while its broker link
is up, raising a beat counter. A worker holds another alive while that row's beat keeps
changing, timed by its own monotonic clock: two hosts' clocks are never compared. A
terminal of a partition with no live worker goes to one live worker picked by a second
hash of its id (`Share.takes`): the dead partition's load spreads evenly over the
survivors instead of doubling one of them, every terminal has exactly one owner whoever
is alive, and a run of dead partitions is covered too.

Why this cannot lose or double a payment: who stores a record changes, not how. While
ownership moves, two workers may store the same record; the database keys make the
second a duplicate and the terminal ignores a repeated ack. Acks still follow the commit
(M8). A record the successor received before it took over was PUBACKed unread; its
terminal sends it again after `resend_after_s` (the outbox resends until acknowledged).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from sync.desk_service.db import DeskDB, DeskDBError, now_ms
from sync.desk_service.schema import desk_workers

log = logging.getLogger("sync.desk.takeover")

DEFAULT_TAKEOVER_AFTER_S = 30.0  # a worker quiet this long: the next partition takes its share
BEATS_PER_TAKEOVER = 6  # beat_s = takeover_after_s / this: one lost beat is no takeover
FORGET_AFTER_S = 3600.0  # a row whose beat has not moved this long (our clock) is deleted:
# workers named by pid leave one row per restart; a live worker whose row went writes it again


def spread(terminal: str, ways: int) -> int:
    """Which of `ways` live workers takes this terminal of a dead partition. Not a second
    crc32: CRC is linear, so for ids of one length it would follow the partition's own."""
    digest = hashlib.blake2s(terminal.encode(), digest_size=4, person=b"takeover").digest()
    return int.from_bytes(digest, "big") % ways


def owner(part: int, terminal: str, n: int, alive: Iterable[int]) -> int | None:
    """The live partition whose worker takes this terminal (of partition `part`): its own
    when alive, else one of the live ones by `spread`. None when nobody is alive."""
    live = sorted({k for k in alive if 0 <= k < n})
    if part in live:
        return part
    return live[spread(terminal, len(live))] if live else None


@dataclass(frozen=True)
class Share:
    """What one worker takes, as it sees the others: swapped whole, so Desk.mine on the
    worker thread needs no lock."""

    own: int
    n: int
    live: tuple[int, ...]  # the live partitions, sorted, own among them

    @classmethod
    def of(cls, own: int, n: int, alive: Iterable[int]) -> Share:
        return cls(own, n, tuple(sorted({k for k in alive if 0 <= k < n} | {own})))

    @property
    def dead(self) -> frozenset[int]:
        return frozenset(range(self.n)) - frozenset(self.live)

    @property
    def covers(self) -> frozenset[int]:
        """Partitions it stores for, wholly (its own) or a part (each dead one)."""
        return self.dead | {self.own}

    def takes(self, part: int, terminal: str) -> bool:
        return owner(part, terminal, self.n, self.live) == self.own

    def describe(self) -> str:
        return describe(self.covers, self.n, self.own, len(self.live))


def describe(covers: Iterable[int], n: int, own: int | None = None, ways: int = 1) -> str:
    """For people: "1/3", or "1/3,0/3" with `own` first when it takes more; "1/3,0/3÷2"
    when each dead partition is shared by 2 live workers."""
    rest = sorted(set(covers) - {own})
    text = ",".join(f"{k}/{n}" for k in ([own] if own is not None else []) + rest)
    return text + (f"÷{ways}" if rest and ways > 1 else "")


@dataclass
class Liveness:
    """Which partitions have a live worker, judged by beats changing on our own clock."""

    own: int
    n: int
    client_id: str
    takeover_after_s: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    _seen: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (beat, at)
    forget: set[str] = field(default_factory=set)  # rows long dead: the next tick deletes

    def __post_init__(self) -> None:
        self.started = self.clock()

    def alive(self, rows: Iterable[tuple[str, int, int, int]]) -> set[int]:
        """rows: (client_id, partition_k, partition_n, beat). Our own partition is always
        alive to us. Within takeover_after_s of our start every partition is: the others
        may be starting too, and a takeover only to hand back at once helps nobody."""
        now = self.clock()
        live = {self.own}
        for client_id, k, n, beat in rows:
            if client_id == self.client_id or n != self.n or not 0 <= k < n:
                continue  # ours, or a worker of another split (an old N): not comparable
            last = self._seen.get(client_id)
            if last is None or last[0] != beat:
                self._seen[client_id] = (beat, now)  # first sight counts as a beat
                last = self._seen[client_id]
            if now - last[1] < self.takeover_after_s:
                live.add(k)
            elif now - last[1] > FORGET_AFTER_S:
                self.forget.add(client_id)
        if now - self.started < self.takeover_after_s:
            return set(range(self.n))
        return live

    def forgotten(self, client_ids: Iterable[str]) -> None:
        for client_id in client_ids:
            self.forget.discard(client_id)
            self._seen.pop(client_id, None)


class Takeover:
    """Beats for this worker and what it takes; `share` is read by Desk.mine on the
    worker thread."""

    def __init__(
        self,
        store: DeskDB,
        client_id: str,
        partition: tuple[int, int],
        takeover_after_s: float = DEFAULT_TAKEOVER_AFTER_S,
        connected: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if takeover_after_s <= 0:
            raise ValueError("takeover_after_s must be positive (no Takeover to turn it off)")
        self.store = store
        self.client_id = client_id
        self.own, self.n = partition
        self.takeover_after_s = takeover_after_s
        self.beat_s = takeover_after_s / BEATS_PER_TAKEOVER
        self.connected = connected
        self.liveness = Liveness(self.own, self.n, client_id, takeover_after_s, clock)
        self.share = Share.of(self.own, self.n, range(self.n))
        self.beats = 0
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{client_id}-takeover",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.beat_s):
            self.tick()

    def tick(self) -> None:
        """Beat (while the broker link is up: a worker that receives nothing must not
        look alive), read the others' beats, move `covers`. A database error keeps the
        current share: the worker cannot store anything then either."""
        beating = self.connected()
        try:
            with self.store.transaction() as db:
                if beating:
                    self._beat(db)
                rows = db.execute(select(desk_workers.c.client_id, desk_workers.c.partition_k,
                                         desk_workers.c.partition_n, desk_workers.c.beat)).all()
        except (SQLAlchemyError, DeskDBError) as exc:
            if not self._failing:
                log.warning("desk worker %s: heartbeat failed, keeping partitions %s: %s",
                            self.client_id, self.share.describe(),
                            str(exc).splitlines()[0])
            self._failing = True
            return
        self._failing = False
        if beating:
            self.beats += 1
        alive = self.liveness.alive((r[0], r[1], r[2], r[3]) for r in rows)
        if self.liveness.forget:
            self._forget()
        self._move(Share.of(self.own, self.n, alive))

    @property
    def covers(self) -> frozenset[int]:
        return self.share.covers

    def _beat(self, db: Connection) -> None:
        values = {"partition_k": self.own, "partition_n": self.n,
                  "covers": self.share.describe()[:256], "seen_ms": now_ms()}
        done = db.execute(update(desk_workers)
                          .where(desk_workers.c.client_id == self.client_id)
                          .values(beat=desk_workers.c.beat + 1, **values))
        if done.rowcount == 0:
            try:
                with db.begin_nested():
                    db.execute(insert(desk_workers).values(
                        client_id=self.client_id, beat=1, **values))
            except IntegrityError:
                pass  # two workers with one client id: the broker keeps only one anyway

    def _forget(self) -> None:
        gone = sorted(self.liveness.forget)
        try:
            with self.store.transaction() as db:
                db.execute(delete(desk_workers).where(desk_workers.c.client_id.in_(gone)))
        except (SQLAlchemyError, DeskDBError):
            return  # tried again on the next tick
        log.info("desk worker %s: forgot %d worker row(s) quiet for over %.0f s: %s",
                 self.client_id, len(gone), FORGET_AFTER_S, ", ".join(gone))
        self.liveness.forgotten(gone)

    def _move(self, new: Share) -> None:
        old = self.share
        if new == old:
            return
        self.share = new
        ways = len(new.live)
        for k in sorted(new.dead - old.dead):
            log.warning("desk worker %s: taking over partition %s%s, its worker has sent no "
                        "heartbeat for %.0f s; its terminals' records are stored and "
                        "acknowledged here until it is back", self.client_id,
                        describe({k}, self.n),
                        f" (1 of the {ways} live workers, each a share)" if ways > 1 else "",
                        self.takeover_after_s)
        for k in sorted(old.dead - new.dead):
            log.warning("desk worker %s: partition %s is back with its own worker, handed "
                        "back", self.client_id, describe({k}, self.n))
        if new.dead and new.dead == old.dead and new.live != old.live:
            log.warning("desk worker %s: the live workers are now %s: partitions %s "
                        "shared %d ways", self.client_id, describe(new.live, self.n),
                        describe(new.dead, self.n), ways)
