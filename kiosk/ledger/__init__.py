"""The ledger: SQLite via SQLAlchemy Core, schema by Alembic, every money fact durable."""

from kiosk.ledger.store import (
    Ledger,
    LedgerError,
    LedgerIdentityError,
    PaymentStatus,
    ReconcileReport,
    StackOutcome,
)

__all__ = [
    "Ledger",
    "LedgerError",
    "LedgerIdentityError",
    "PaymentStatus",
    "ReconcileReport",
    "StackOutcome",
]
