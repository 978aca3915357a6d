"""The ledger's SQLAlchemy metadata and its Alembic migrations describe the same schema.

Code that builds queries from the metadata (and anyone writing the next migration with
autogenerate) must see exactly what a migrated ledger holds: tables, columns, types,
constraints and indexes. A difference here is a migration or a declaration forgotten."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index

from kiosk.ledger import schema
from kiosk.ledger.db import make_engine, migrate


def _drift(path: Path) -> list[object]:
    engine = make_engine(path)
    try:
        migrate(engine)
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), schema.metadata))
    finally:
        engine.dispose()


def test_a_migrated_ledger_matches_the_metadata(tmp_path: Path) -> None:
    assert _drift(tmp_path / "ledger.sqlite") == []


def test_the_comparison_sees_a_missing_index(tmp_path: Path) -> None:
    """The check above is only worth something if it notices an undeclared index."""
    extra = Index("ix_test_only_payments_account", schema.payments.c.account)
    try:
        diff = _drift(tmp_path / "ledger.sqlite")
    finally:
        schema.payments.indexes.discard(extra)
    assert [d[0] for d in diff if isinstance(d, tuple)] == ["add_index"], diff
