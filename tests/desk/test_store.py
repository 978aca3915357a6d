"""The desk store on both dialects: idempotent records, conflicts, the terminal's state
(an older connection's offline ignored), health history, commands and statuses."""

from __future__ import annotations

import json

from sync.desk_service.db import CommitStats, DeskDB, record_problem


def _payment(seq: int, pid: str, amount: int = 50_000, count: int = 0,
             account: str = "9161234567", kind: str = "payment") -> dict:
    return {"seq": seq, "ref": pid, "data": {
        "id": pid, "kind": kind, "status": "queued", "provider_id": "mts",
        "account": account, "inserted_minor": amount, "commission_minor": 0,
        "credited_minor": amount, "currency": "RUB", "reprocess_count": count,
        "created_ms": 1_767_225_600_000 + seq}}


def _commit(store: DeskDB, records: list[dict], kind: str = "payment",
            terminal: str = "T1") -> tuple[list[int], CommitStats]:
    stats = CommitStats()
    with store.transaction() as conn:
        seqs = store.commit_records(conn, terminal, kind, records, stats, 1)
    return seqs, stats


def test_a_record_delivered_twice_is_stored_once(db_target):
    store = DeskDB(db_target)
    try:
        first = [_payment(1, "T1-00000001"), _payment(2, "T1-00000002")]
        assert _commit(store, first)[0] == [1, 2]
        seqs, stats = _commit(store, [*first, _payment(3, "T1-00000003")])
        assert seqs == [1, 2, 3]  # every one acknowledged again
        assert (stats.duplicates, stats.new_payments) == (2, 1)
        assert [p["payment_id"] for p in store.payments("T1")] == [
            "T1-00000001", "T1-00000002", "T1-00000003"]
        # the same payment resent under a new seq is a duplicate, not a second payment
        _, again = _commit(store, [{**_payment(1, "T1-00000001"), "seq": 9}])
        assert again.duplicates == 1 and len(store.payments("T1")) == 3
    finally:
        store.close()


def test_same_id_other_content_is_a_conflict_kept_apart(db_target):
    store = DeskDB(db_target)
    try:
        _commit(store, [_payment(1, "T1-00000001", amount=50_000)])
        seqs, stats = _commit(store, [_payment(1, "T1-00000001", amount=10_000)])
        assert seqs == [1] and len(stats.conflicts) == 1
        (c,) = store.conflicts("T1")
        assert json.loads(c["stored"])["inserted_minor"] == 50_000
        assert json.loads(c["received"])["inserted_minor"] == 10_000
        assert [p["data"]["inserted_minor"] for p in store.payments("T1")] == [50_000]
    finally:
        store.close()


def test_the_operator_view_columns_and_unclaimed_credits(db_target):
    store = DeskDB(db_target)
    try:
        _commit(store, [_payment(1, "T1-00000001", account="+7 (916) 123-45-67"),
                        _payment(2, "T1-00000002", kind="unclaimed", account="")])
        (u,) = store.unclaimed("T1")
        assert u["payment_id"] == "T1-00000002"
        with store.engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT account_digits, inserted_minor, kind FROM payments "
                "WHERE payment_id = 'T1-00000001'").one()
        assert tuple(row) == ("9161234567", 50_000, "payment")
    finally:
        store.close()


def test_an_older_connections_offline_does_not_replace_the_newer_online(db_target):
    store = DeskDB(db_target)
    try:
        with store.transaction() as conn:
            assert store.save_state(conn, "T1", {"state": "online", "connection_id": "new",
                                                 "at_ms": 5}, 10)
            assert not store.save_state(conn, "T1", {"state": "offline",
                                                     "connection_id": "old", "at_ms": None}, 11)
        (t,) = store.terminals()
        assert (t["state"], t["connection_id"]) == ("online", "new")
        with store.transaction() as conn:
            assert store.save_state(conn, "T1", {"state": "offline", "connection_id": "new",
                                                 "at_ms": None}, 12)
        assert store.terminals()[0]["state"] == "offline"
    finally:
        store.close()


def test_health_history_keeps_each_report_once(db_target):
    store = DeskDB(db_target)
    try:
        for at in (100, 100, 200):  # the retained one delivered again to another worker
            with store.transaction() as conn:
                store.save_health(conn, "T1", {"at_ms": at, "screen": "idle"}, at + 1)
        assert [h["at_ms"] for h in store.health_history("T1")] == [100, 200]
        assert json.loads(store.terminals()[0]["health"])["at_ms"] == 200
    finally:
        store.close()


def test_commands_results_and_statuses_are_kept(db_target):
    store = DeskDB(db_target)
    try:
        body = {"cmd_id": "c1", "terminal_id": "T1", "type": "disable",
                "args": {"reason": "x"}, "seq": 1, "issued_ms": 1, "expires_ms": 2}
        store.record_command(body)
        with store.transaction() as conn:
            store.save_result(conn, "T1", "c1", {"ok": False, "error": "expired"}, 3)
            store.save_result(conn, "T1", "c-elsewhere", {"ok": True, "type": "enable"}, 4)
        cmds = {c["cmd_id"]: c for c in store.commands("T1")}
        assert (cmds["c1"]["ok"], cmds["c1"]["error"], cmds["c1"]["type"]) == (
            False, "expired", "disable")
        assert cmds["c-elsewhere"]["ok"] is True and cmds["c-elsewhere"]["sent_ms"] is None
        v = store.next_status_version("T1", "T1-00000001")
        store.record_statuses("T1", [{"payment_id": "T1-00000001", "status": "processed",
                                      "version": v, "reprocess_count": 0}])
        (st,) = store.statuses_sent("T1")
        assert (st["status"], st["version"]) == ("processed", 1)
    finally:
        store.close()


def test_records_that_cannot_be_stored_are_named():
    assert record_problem({"seq": 2**63, "ref": "T1-1", "data": {}}, "event")
    assert record_problem({"seq": 1, "ref": "T1-1\x00", "data": {}}, "event")
    assert record_problem({"seq": 1, "ref": "x" * 65, "data": {}}, "event")
    assert record_problem({"seq": 1, "ref": "T1-1", "data": {"reprocess_count": "1"}},
                          "payment")
    assert record_problem({"seq": True, "ref": "T1-1", "data": {}}, "event")
    assert record_problem({"seq": 1, "ref": "T1-1", "data": {}}, "payment") is None
