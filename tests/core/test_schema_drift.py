"""The ledger's SQLAlchemy metadata and its Alembic migrations describe the same schema.

Code that builds queries from the metadata (and anyone writing the next migration with
autogenerate) must see exactly what a migrated ledger holds: tables, columns, types,
constraints and indexes. A difference here is a migration or a declaration forgotten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index

from kiosk.ledger import schema
from kiosk.ledger.db import (
    HEAD_REVISION,
    current_revision,
    head_revision,
    make_engine,
    migrate,
    stored_revision,
)

REPO = Path(__file__).resolve().parents[2]


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


def test_the_start_path_knows_the_head_revision() -> None:
    """`migrate` skips Alembic when the file is at HEAD_REVISION: a migration added
    without raising that constant would never run on terminals that are current."""
    assert head_revision() == HEAD_REVISION


def test_a_current_ledger_opens_without_loading_alembic(tmp_path: Path) -> None:
    """Alembic is about 11 MiB of the daemon's 60 MB budget (docs/benchmarks.md): a fresh
    interpreter that opens an up-to-date ledger must not import it; one that opens a new
    file must (that is where the schema comes from)."""
    path = tmp_path / "ledger.sqlite"
    probe = (
        "import sys; from pathlib import Path; from kiosk.ledger import Ledger;"
        f"l = Ledger(Path({str(path)!r}), 'T1'); l.open(); l.close();"
        "print('alembic' in sys.modules)"
    )

    def alembic_loaded() -> str:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True, cwd=REPO).stdout.strip()

    assert alembic_loaded() == "True"  # a new file: migrated from nothing
    assert stored_revision_of(path) == HEAD_REVISION
    assert alembic_loaded() == "False"  # current: one SELECT, no Alembic


def test_an_older_ledger_is_still_migrated(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    engine = make_engine(path)
    try:
        migrate(engine, "0002")
        assert stored_revision(engine) == "0002"
        migrate(engine)
        assert stored_revision(engine) == HEAD_REVISION
        assert current_revision(engine) == HEAD_REVISION  # Alembic agrees
    finally:
        engine.dispose()


def stored_revision_of(path: Path) -> str | None:
    engine = make_engine(path)
    try:
        return stored_revision(engine)
    finally:
        engine.dispose()
