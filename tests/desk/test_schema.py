"""The desk database's schema and its Alembic migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sync.desk_service import schema
from sync.desk_service.db import DeskDB, DeskDBError, current_revision, head_revision


def test_the_migrations_build_exactly_the_schema(db_target):
    store = DeskDB(db_target)
    try:
        assert current_revision(store.engine) == head_revision()
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
        assert diff == [], diff
    finally:
        store.close()


def test_workers_starting_together_migrate_once(db_target):
    errors: list[BaseException] = []
    stores: list[DeskDB] = []

    def open_one() -> None:
        try:
            stores.append(DeskDB(db_target))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(stores) == 4
    assert current_revision(stores[0].engine) == head_revision()
    assert stores[0].next_seq("T1", "desk.1") == 1
    for s in stores:
        s.close()


def test_an_old_unversioned_desk_file_is_refused_with_a_reason(tmp_path: Path):
    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE records (terminal_id TEXT, seq INTEGER)")
    with pytest.raises(DeskDBError, match="old, unversioned format"):
        DeskDB(old)
