"""The ledger file: schema migrations, durability settings, outbox acknowledgement (M8)."""

from __future__ import annotations

import sqlite3

import pytest

from kiosk.ledger import Ledger, LedgerError, outbox
from kiosk.ledger.db import current_revision, head_revision, make_engine, migrate
from kiosk.ledger.desk import acknowledge_seqs


def test_upgrade_from_first_revision_keeps_money(tmp_path):
    path = tmp_path / "old.sqlite"
    engine = make_engine(path)
    migrate(engine, "0001")
    assert current_revision(engine) == "0001"
    with engine.begin() as conn:  # a terminal that ran revision 0001 has taken money
        conn.exec_driver_sql(
            "INSERT INTO payments (id, number, kind, inserted_minor, commission_minor, "
            "credited_minor, currency, status, created_ms, updated_ms, reprocess_count) "
            "VALUES ('T1-00000001', 1, 'payment', 50000, 1500, 48500, 'RUB', 'queued', 1, 1, 0)"
        )
        conn.exec_driver_sql("INSERT INTO counters (name, value) VALUES ('payment', 1)")
    engine.dispose()
    ledger = Ledger(path, "T1")
    ledger.open()  # migrates to head on open
    assert current_revision(ledger.engine) == head_revision() == "0004"
    assert ledger.get_payment("T1-00000001")["credited_minor"] == 48_500
    tables = {
        r[0]
        for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"desk_commands", "config_versions"} <= tables
    session = ledger.open_session("mts", "9161234567", "RUB")
    escrow = ledger.record_escrow(session, 10_000, "RUB", 2)
    ledger.record_stacked("k", 10_000, "RUB", 2, False, escrow)
    assert ledger.finish_session(session, lambda amount: 0) == "T1-00000002"  # numbering goes on
    # Revision 0004: a payment from before it keeps no check code (none was ever printed,
    # and NULL matches nothing a customer types); every new one gets one.
    assert ledger.get_payment("T1-00000001")["check_code"] is None
    new_code = ledger.get_payment("T1-00000002")["check_code"]
    assert len(new_code) == 6 and new_code.isdigit()


def test_durability_settings(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", "T1")
    ledger.open()
    with ledger.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_money_columns_are_integers(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", "T1")
    ledger.open()
    with ledger.engine.connect() as conn:
        for table in ("payments", "stacked_bills", "sessions", "escrows", "cassette"):
            cols = conn.exec_driver_sql(f"PRAGMA table_info({table})").all()
            for col in cols:
                if col[1].endswith("_minor"):
                    assert col[2] == "INTEGER", (table, col[1])


def test_unopenable_ledger_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LedgerError, match="cannot create the data directory"):
        Ledger(blocker / "sub" / "l.sqlite", "T1").open()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(garbage, "T1").open()


def _one_payment(ledger: Ledger, key: str) -> str:
    session = ledger.open_session("mts", "9161234567", "RUB")
    escrow = ledger.record_escrow(session, 10_000, "RUB", 2)
    ledger.record_stacked(key, 10_000, "RUB", 2, False, escrow)
    pid = ledger.finish_session(session, lambda amount: 100)
    assert pid is not None
    return pid


def test_m8_payment_leaves_outbox_only_on_desk_ack(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", "T1")
    ledger.open()
    a, b = _one_payment(ledger, "k1"), _one_payment(ledger, "k2")
    msgs = [m for m in outbox.pending(ledger) if m.kind == "payment"]
    assert [m.ref for m in msgs] == [a, b]
    assert msgs[0].payload["credited_minor"] == 9_900
    assert msgs[0].payload["bills"] == [{"amount_minor": 10_000, "currency": "RUB", "count": 1}]
    outbox.mark_sent(ledger, [m.id for m in msgs])  # published (and PUBACKed): still pending
    assert [m.ref for m in outbox.pending(ledger) if m.kind == "payment"] == [a, b]
    assert ledger.get_payment(a)["status"] == "sent"
    assert acknowledge_seqs(ledger, [msgs[0].id]) == 1
    assert acknowledge_seqs(ledger, [msgs[0].id]) == 0  # a repeated ack changes nothing
    assert [m.ref for m in outbox.pending(ledger) if m.kind == "payment"] == [b]
    assert ledger.get_payment(a)["status"] == "accepted"
    assert [h["status"] for h in ledger.get_payment(a)["history"]][-1] == "accepted"
    assert ledger.queue_stats()["payments_unsent"] == 1


def test_payment_history_records_each_status(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", "T1")
    ledger.open()
    pid = _one_payment(ledger, "k1")
    assert [h["status"] for h in ledger.get_payment(pid)["history"]] == ["confirmed", "queued"]


def test_abandoning_a_session_with_cash_is_refused(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", "T1")
    ledger.open()
    session = ledger.open_session("mts", "9161234567", "RUB")
    escrow = ledger.record_escrow(session, 10_000, "RUB", 2)
    ledger.record_stacked("k", 10_000, "RUB", 2, False, escrow)
    with pytest.raises(LedgerError, match="holds cash"):
        ledger.abandon_session(session)


def test_id_lists_are_one_sql_text_whatever_their_length(tmp_path):
    """sqlite3 caches prepared statements per text: a text per list length held megabytes
    while the outbox drained (docs/benchmarks.md, mqtt_drain)."""
    from sqlalchemy import select
    from sqlalchemy.dialects import sqlite

    from kiosk.ledger import schema as t
    from kiosk.ledger.db import in_list

    def sql(n: int) -> str:
        query = select(t.outbox.c.id).where(in_list(t.outbox.c.id, range(n)))
        return str(query.compile(dialect=sqlite.dialect()))

    assert sql(1) == sql(50) == sql(1000)
    ledger = Ledger(tmp_path / "l.sqlite", "T1")
    ledger.open()
    ids = [_one_payment(ledger, f"k{i}") for i in range(3)]
    msgs = [m for m in outbox.pending(ledger) if m.kind == "payment"]
    outbox.mark_sent(ledger, [m.id for m in msgs[:2]])
    assert [ledger.get_payment(p)["status"] for p in ids] == ["sent", "sent", "queued"]
