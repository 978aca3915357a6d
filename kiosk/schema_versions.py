"""Alembic plumbing shared by the two databases that carry migrations: the terminal's
ledger (kiosk/migrations) and the desk's database (sync/desk_service/migrations).
Each passes its own script folder; how a schema is upgraded stays with its owner."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine


def alembic_config(scripts: Path) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(scripts))
    return cfg


def head_revision(scripts: Path) -> str:
    head = ScriptDirectory.from_config(alembic_config(scripts)).get_current_head()
    if head is None:
        raise RuntimeError(f"{scripts}: no migration scripts")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
