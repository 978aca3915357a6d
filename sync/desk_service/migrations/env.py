"""Alembic environment of the desk database: always run with the connection handed over
by sync.desk_service.db.migrate (several workers may start at once: see there)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through sync.desk_service.db.migrate
    raise RuntimeError("run desk migrations through sync.desk_service.db.migrate()")

context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
