"""Two desk workers (two processes, one database) publishing config for the same terminal
at the same moment never choose the same version: the version is claimed in the database
first (compare-and-set, DeskDB.claim_config), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from sync.desk_service.db import DeskDB

TOPIC = "kiosk/v1/TCLAIM/config"


def test_a_claim_builds_only_on_the_newest_document(db_target):
    a, b = DeskDB(db_target), DeskDB(db_target)  # two workers' own connections
    try:
        assert a.claim_config(TOPIC, None, 1, {"version": 1, "support_phone": "8 800 1"})
        assert not b.claim_config(TOPIC, None, 1, {"version": 1})  # a was first
        assert b.last_config(TOPIC) == (1, {"version": 1, "support_phone": "8 800 1"})
        assert b.claim_config(TOPIC, 1, 2, {"version": 2})
        assert not a.claim_config(TOPIC, 1, 2, {"version": 2, "x": 1})  # built on v1: stale
        assert a.last_config(TOPIC) == (2, {"version": 2})
    finally:
        a.close()
        b.close()


def test_racing_workers_take_every_version_once(db_target):
    stores = [DeskDB(db_target), DeskDB(db_target)]
    taken: list[int] = []
    lock = threading.Lock()
    per_thread, threads_per_store = 10, 3

    def publish(store: DeskDB) -> None:
        for _ in range(per_thread):
            while True:
                last = store.last_config(TOPIC)
                version = 1 if last is None else last[0] + 1
                if store.claim_config(TOPIC, None if last is None else last[0], version,
                                      {"version": version}):
                    with lock:
                        taken.append(version)
                    break

    threads = [threading.Thread(target=publish, args=(store,))
               for store in stores for _ in range(threads_per_store)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        total = per_thread * threads_per_store * len(stores)
        assert sorted(taken) == list(range(1, total + 1))  # none twice, none skipped
        assert stores[0].last_config(TOPIC) == (total, {"version": total})
    finally:
        for store in stores:
            store.close()
