"""Opening the ledger database: SQLite in WAL mode with synchronous=FULL, migrated on open.

Alembic is loaded only when the file is not at HEAD_REVISION already: importing it costs
the daemon about 11 MiB of its 60 MB budget (docs/benchmarks.md, `mqtt_drain`), and on a
terminal that is already current (every start but the first after an update) it has
nothing to do.

synchronous=FULL makes every COMMIT fsync the WAL, so a commit that returned is on disk:
that is what lets the driver ACK a stacked bill after the commit (M2). Transactions start
with BEGIN IMMEDIATE so a writer never discovers a lock half-way through a money update.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Engine, create_engine, event, func, pool, select
from sqlalchemy.exc import OperationalError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The newest script in kiosk/migrations/versions. Adding a migration means raising this:
# tests/core/test_schema_drift.py checks it against Alembic's own view of the head.
HEAD_REVISION = "0004"
BUSY_TIMEOUT_MS = 5000
READ_ONLY_OPTION = "kiosk_read_only"  # execution option: this connection only reads


def make_engine(path: Path) -> Engine:
    engine = create_engine(
        f"sqlite+pysqlite:///{path}",
        poolclass=pool.StaticPool,  # one connection: the ledger serialises writers itself
        connect_args={"check_same_thread": False, "isolation_level": None},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA page_size=1024")  # before WAL: takes effect on a new file
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # Reads take a plain (deferred) BEGIN: a read-only or full disk must not stop the
        # customer's payment check, the counters or the desk's health report.
        read = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

    return engine


def alembic_config() -> AlembicConfig:
    from kiosk import schema_versions

    return schema_versions.alembic_config(MIGRATIONS)


def head_revision() -> str:
    """The head as Alembic reads it from the scripts (tests, tools; not the start path)."""
    from kiosk import schema_versions

    return schema_versions.head_revision(MIGRATIONS)


def current_revision(engine: Engine) -> str | None:
    from kiosk import schema_versions

    return schema_versions.current_revision(engine)


def stored_revision(engine: Engine) -> str | None:
    """The revision recorded in the file, read with one SELECT (no Alembic); None for a
    file that has none (new, or not a ledger)."""
    with engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as conn:
        try:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
        except OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
    return str(rows[0][0]) if len(rows) == 1 else None


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (normally head). Safe to call on every start."""
    if revision == "head" and stored_revision(engine) == HEAD_REVISION:
        return
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def in_list(column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN (the values)` as ONE SQL text whatever the list length.

    SQLAlchemy renders `in_([...])` with one parameter per value, so every length is a new
    statement, and sqlite3 keeps the last 128 prepared statements per connection: the
    outbox's 50-to-1000-long id lists held megabytes (docs/benchmarks.md, mqtt_drain).
    json_each takes the whole list as one parameter.
    """
    each = func.json_each(json.dumps(list(values))).table_valued("value")
    return column.in_(select(each.c.value))
