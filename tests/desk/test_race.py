"""Two workers storing the same records at once (a terminal resent a batch while the
first worker was still committing it): the loser retries and finds duplicates; each
payment is stored once and both acknowledge it."""

from __future__ import annotations

import logging
import threading

from sqlalchemy import text

from sync import topics
from sync.connection import Inbound
from sync.desk import Desk
from sync.desk_service.db import CommitStats, DeskDB
from sync.ed25519 import PrivateKey
from sync.envelope import seal
from sync.keys import key_id
from tests.desk.test_serve import _batch, _record
from tests.sync.conftest import wait_for


def _waiting_on_a_lock(store: DeskDB) -> bool:
    with store.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalar())


def test_a_key_race_between_two_workers_is_retried_into_duplicates(db_target, caplog):
    tid = "R1"
    key = PrivateKey.generate()
    records = [_record(seq, tid) for seq in (1, 2, 3)]
    msg = Inbound(0, topics.topic(tid, topics.PAYMENTS),
                  seal(key, key_id(tid, key.public_key()), "payments", _batch(tid, records)),
                  1, False, 1)
    worker_b = Desk("127.0.0.1", 1, PrivateKey.generate(), "desk.race",
                    {tid: key.public_key()}, db_target, auto_ack=False)  # never connected
    pubacks: list[Inbound] = []
    worker_b.conn.ack = pubacks.append  # type: ignore[method-assign]
    store_a = DeskDB(db_target)
    caplog.set_level(logging.INFO, logger="sync.desk")
    try:
        with store_a.transaction() as conn:  # worker A, mid-commit
            store_a.commit_records(conn, tid, "payment", records, CommitStats(), 1)
            b = threading.Thread(target=worker_b._process, args=([msg],))
            b.start()
            if store_a.dialect == "postgresql":  # B's INSERT waits on A's uncommitted keys
                wait_for(lambda: _waiting_on_a_lock(store_a), 15, "B blocked on A's rows")
            assert b.is_alive()
        b.join(30)
        assert not b.is_alive()
        assert (worker_b.stats.duplicates, worker_b.stats.new_payments) == (3, 0)
        assert worker_b.stats.quarantined == 0 and pubacks == [msg]
        assert [p["seq"] for p in store_a.payments(tid)] == [1, 2, 3]
        if store_a.dialect == "postgresql":
            assert "desk batch lost a key race" in caplog.text
    finally:
        store_a.close()
        worker_b.store.close()
