"""The ledger: SQLite via SQLAlchemy Core, schema by Alembic, every money fact durable."""

from kiosk.ledger.store import Ledger, LedgerError, PaymentStatus, ReconcileReport, StackOutcome

__all__ = ["Ledger", "LedgerError", "PaymentStatus", "ReconcileReport", "StackOutcome"]
