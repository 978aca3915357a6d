"""Alembic migrations of the ledger; run on every start by kiosk.ledger.db.migrate()."""
