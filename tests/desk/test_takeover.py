"""Partition takeover (sync/desk_service/takeover.py): who takes a partition whose worker
went quiet, and the heartbeats in a real desk database (SQLite and PostgreSQL). The clock
is the one thing faked: a takeover waits tens of seconds by design."""

from __future__ import annotations

import zlib

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from sync.desk_service import takeover as tk
from sync.desk_service.db import DeskDB
from sync.desk_service.schema import desk_workers
from sync.desk_service.takeover import Liveness, Share, Takeover, describe, owner, spread

TERMINALS = [f"T{i:05d}" for i in range(600)]


def test_every_terminal_has_exactly_one_owner_whoever_is_alive():
    """For every set of live partitions (5 of them): each terminal is taken by exactly one
    live worker; a live partition keeps its own terminals; a dead one's are spread so that
    every survivor takes a fair part, not one of them all."""
    n = 5
    part = {t: zlib.crc32(t.encode()) % n for t in TERMINALS}
    for mask in range(1, 2 ** n):
        alive = [k for k in range(n) if mask >> k & 1]
        shares = {k: Share.of(k, n, alive) for k in alive}
        for t in TERMINALS:
            takers = [k for k, s in shares.items() if s.takes(part[t], t)]
            assert takers == [owner(part[t], t, n, alive)], (alive, t)
            if part[t] in alive:
                assert takers == [part[t]]
        orphans = [t for t in TERMINALS if part[t] not in alive]
        for k, s in shares.items():  # each survivor's part of the orphans: about 1/len
            got = sum(s.takes(part[t], t) for t in orphans)
            assert abs(got - len(orphans) / len(alive)) <= 0.35 * len(orphans) / len(alive) + 3, \
                (alive, k, got, len(orphans))


def test_the_spread_does_not_follow_the_partition_hash():
    """crc32 is linear: a second crc32 of the same ids would put all of a dead partition's
    terminals on one survivor for some N. The spread of each partition's terminals over
    two survivors is near half and half."""
    for n in (2, 3, 4, 6):
        for j in range(n):
            mine = [t for t in TERMINALS if zlib.crc32(t.encode()) % n == j]
            ones = sum(spread(t, 2) for t in mine)
            assert 0.35 * len(mine) < ones < 0.65 * len(mine), (n, j, ones, len(mine))


def test_own_partition_is_always_taken_even_if_the_others_think_it_dead():
    s = Share.of(1, 3, set())
    assert s.live == (1,) and s.covers == {0, 1, 2}
    assert all(s.takes(p, t) for t in TERMINALS[:50] for p in range(3))
    assert Share.of(1, 3, {0}).covers == {1, 2} and Share.of(1, 3, {0, 2}).covers == {1}
    assert owner(0, "T1", 3, []) is None  # nobody alive: nobody owns anything
    assert describe({2, 0}, 3) == "0/3,2/3"
    assert Share.of(1, 3, {1, 2}).describe() == "1/3,0/3÷2"  # 0/3 shared by the 2 alive
    assert Share.of(1, 3, {1}).describe() == "1/3,0/3,2/3"
    assert Share.of(1, 3, {0, 1, 2}).describe() == "1/3"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_liveness_follows_beats_on_its_own_clock():
    clock = Clock()
    live = Liveness(0, 3, "w0", 30.0, clock)
    rows = [("w1", 1, 3, 7), ("w2", 2, 3, 4)]
    assert live.alive(rows) == {0, 1, 2}  # first sight counts as a beat
    clock.t += 31
    assert live.alive([("w1", 1, 3, 8), ("w2", 2, 3, 4)]) == {0, 1}  # w2 stopped
    clock.t += 10
    assert live.alive([("w1", 1, 3, 8), ("w2", 2, 3, 5)]) == {0, 1, 2}  # w2 back
    clock.t += 21
    assert live.alive([("w1", 1, 3, 8), ("w2", 2, 3, 6)]) == {0, 2}  # w1 quiet 31 s
    # rows of another split (an old N), of an impossible K and our own are not compared
    assert live.alive([("old", 1, 4, 99), ("bad", 7, 3, 1), ("w0", 1, 3, 5)]) == {0}


def test_nobody_is_taken_over_while_we_are_starting():
    clock = Clock()
    live = Liveness(0, 3, "w0", 30.0, clock)
    assert live.alive([]) == {0, 1, 2}
    clock.t += 29
    assert live.alive([]) == {0, 1, 2}
    clock.t += 2
    assert live.alive([]) == {0}  # partitions 1 and 2 never had a worker


def test_a_row_already_dead_at_our_start_is_taken_after_one_period_not_two():
    clock = Clock()
    live = Liveness(0, 2, "w0", 30.0, clock)
    assert live.alive([("w1", 1, 2, 3)]) == {0, 1}  # seen during the start grace
    clock.t += 31
    assert live.alive([("w1", 1, 2, 3)]) == {0}


def pair(db: DeskDB, clock: Clock, after: float = 30.0) -> tuple[Takeover, Takeover]:
    return (Takeover(db, "w0", (0, 2), after, clock=clock),
            Takeover(db, "w1", (1, 2), after, clock=clock))


def beats(db: DeskDB) -> dict[str, tuple[int, str]]:
    with db.transaction() as c:
        rows = c.execute(select(desk_workers.c.client_id, desk_workers.c.beat,
                                desk_workers.c.covers)).all()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_a_quiet_worker_is_taken_over_and_handed_back(db_target):
    db = DeskDB(db_target)
    clock = Clock()
    w0, w1 = pair(db, clock)
    try:
        for _ in range(8):  # both beating through the start grace and beyond
            clock.t += w0.beat_s
            w0.tick()
            w1.tick()
        assert (w0.covers, w1.covers) == ({0}, {1})
        assert beats(db) == {"w0": (8, "0/2"), "w1": (8, "1/2")}
        for _ in range(6):  # w1 is gone: its beat stops
            clock.t += w0.beat_s
            w0.tick()
        assert w0.covers == {0}  # 30 s is not yet over 30 s
        clock.t += w0.beat_s
        w0.tick()
        assert w0.covers == {0, 1}
        w0.tick()
        assert beats(db)["w0"][1] == "0/2,1/2"  # the operator sees it in the table
        w1.tick()  # back
        clock.t += w0.beat_s
        w0.tick()
        assert w0.covers == {0}
    finally:
        db.close()


def test_a_worker_without_its_broker_link_does_not_beat(tmp_path):
    db = DeskDB(tmp_path / "desk.sqlite")
    clock = Clock()
    link = {"up": True}
    w0 = Takeover(db, "w0", (0, 2), 30.0, clock=clock)
    w1 = Takeover(db, "w1", (1, 2), 30.0, connected=lambda: link["up"], clock=clock)
    try:
        w1.tick()
        link["up"] = False  # it receives nothing: it must not look alive
        for _ in range(13):
            clock.t += w0.beat_s
            w0.tick()
            w1.tick()
        assert beats(db)["w1"][0] == 1 and w1.beats == 1
        assert w0.covers == {0, 1}
        assert w1.covers == {1}  # without a link it takes nothing more either
    finally:
        db.close()


def test_rows_quiet_for_an_hour_are_forgotten_and_a_live_worker_writes_its_row_again(
        tmp_path):
    db = DeskDB(tmp_path / "desk.sqlite")
    clock = Clock()
    w0, w1 = pair(db, clock)
    try:
        w1.tick()
        w0.tick()
        clock.t += tk.FORGET_AFTER_S + 1
        w0.tick()  # sees w1 long quiet: deletes it on this tick
        assert set(beats(db)) == {"w0"}
        w1.tick()  # it was only away: its row comes back
        assert beats(db)["w1"][0] == 1
    finally:
        db.close()


def test_a_database_error_keeps_the_current_share(tmp_path, mocker, caplog):
    db = DeskDB(tmp_path / "desk.sqlite")
    clock = Clock()
    w0, w1 = pair(db, clock, after=6.0)
    try:
        w1.tick()
        clock.t += 7
        w0.tick()
        clock.t += 7
        w0.tick()
        assert w0.covers == {0, 1}
        mocker.patch.object(db, "transaction",
                            side_effect=OperationalError("SELECT", {}, Exception("gone")))
        for _ in range(3):
            w0.tick()
        assert w0.covers == {0, 1}
        assert sum("heartbeat failed" in r.message for r in caplog.records) == 1  # once
    finally:
        db.close()


def test_a_worker_with_the_same_client_id_twice_shares_one_row(tmp_path):
    db = DeskDB(tmp_path / "desk.sqlite")
    a = Takeover(db, "same", (0, 2), 30.0)
    b = Takeover(db, "same", (0, 2), 30.0)
    try:
        a.tick()
        b.tick()
        assert beats(db) == {"same": (2, "0/2")}
        with db.transaction() as c:  # a row written by an old release of the split
            c.execute(update(desk_workers).values(partition_n=3))
        a.tick()
        assert beats(db)["same"][0] == 3
    finally:
        db.close()


def test_takeover_needs_a_positive_period(tmp_path):
    db = DeskDB(tmp_path / "desk.sqlite")
    try:
        with pytest.raises(ValueError, match="positive"):
            Takeover(db, "w", (0, 2), 0)
    finally:
        db.close()
