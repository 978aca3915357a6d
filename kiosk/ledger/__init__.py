"""The ledger: SQLite via SQLAlchemy Core, schema by Alembic, every money fact durable.

Other modules use its public doors only: `Ledger.transaction()` / `Ledger.read()` (the
LedgerTx / LedgerRead handles) and `Ledger.pragma()`; see docs/ledger.md."""

from kiosk.ledger.store import (
    Ledger,
    LedgerError,
    LedgerIdentityError,
    LedgerRead,
    LedgerTx,
    NewPayment,
    PaymentKind,
    PaymentStatus,
    ReconcileReport,
    StackOutcome,
)

__all__ = [
    "Ledger",
    "LedgerError",
    "LedgerIdentityError",
    "LedgerRead",
    "LedgerTx",
    "NewPayment",
    "PaymentKind",
    "PaymentStatus",
    "ReconcileReport",
    "StackOutcome",
]
