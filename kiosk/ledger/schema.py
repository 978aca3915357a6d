"""Ledger tables (SQLAlchemy Core). Migrations in kiosk/migrations create exactly these.

Money is INTEGER minor units everywhere; times are INTEGER milliseconds since the epoch
(UTC). Names say what a row is: one stacked bill, one escrow decision, one payment.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Monotonic counters that must never repeat (payment numbers: M5).
counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)

# One customer session from account confirmation on (cash can arrive only from then).
sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("provider_id", String(64), nullable=False),
    Column("account", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # collecting | finished | abandoned
    Column("inserted_minor", Integer, nullable=False, default=0),
    Column("currency", String(3), nullable=False),
    Column("started_ms", Integer, nullable=False),
    Column("updated_ms", Integer, nullable=False),
    Column("payment_id", String(64), nullable=True),
)

# The escrow decision STACK, persisted before the STACK command is sent (M3, M6).
escrows = Table(
    "escrows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("sessions.id"), nullable=True),
    Column("amount_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("bill_type", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # pending | stacked | returned | expired
    Column("created_ms", Integer, nullable=False),
    Column("resolved_ms", Integer, nullable=True),
    Column("run_id", String(32), nullable=False),
    # Revision 0003: the encashment whose report explained this escrow (outcome unknown).
    Column("encashment_id", Integer, nullable=True),
)

# Every bill past the point of no return (M1), exactly once per acceptor event (M2).
stacked_bills = Table(
    "stacked_bills",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_key", String(128), nullable=False, unique=True),
    Column("escrow_id", Integer, ForeignKey("escrows.id"), nullable=True),
    Column("session_id", Integer, ForeignKey("sessions.id"), nullable=True),
    Column("payment_id", String(64), ForeignKey("payments.id"), nullable=True),
    Column("amount_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("bill_type", Integer, nullable=False),
    Column("recovered", Boolean, nullable=False, default=False),
    Column("stacked_ms", Integer, nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("encashment_id", Integer, ForeignKey("encashments.id"), nullable=True),
)

# Payments and unclaimed credits. Immutable id = terminal id + monotonic number (M5).
payments = Table(
    "payments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("number", Integer, nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # payment | unclaimed
    Column("session_id", Integer, ForeignKey("sessions.id"), nullable=True, unique=True),
    Column("provider_id", String(64), nullable=True),
    Column("account", String(64), nullable=True),
    Column("inserted_minor", Integer, nullable=False),
    Column("commission_minor", Integer, nullable=False),
    Column("credited_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_detail", Text, nullable=True),
    Column("note", Text, nullable=True),  # why it exists (recovered after restart, ...)
    Column("created_ms", Integer, nullable=False),
    Column("updated_ms", Integer, nullable=False),
    Column("receipt_printed_ms", Integer, nullable=True),
    Column("reprocess_count", Integer, nullable=False, default=0),
    # Revision 0004: the customer's check code (kiosk/check_code.py), printed on the
    # receipt; "check my payment" needs it with the id. NULL for payments made before
    # 0004: such a payment cannot be checked at the terminal (docs/ledger.md).
    Column("check_code", String(16), nullable=True),
)

payment_history = Table(
    "payment_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("payment_id", String(64), ForeignKey("payments.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=True),
    Column("at_ms", Integer, nullable=False),
)

# Messages for the desk; a payment leaves only on the desk's application ack (M8).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # payment | event
    Column("ref", String(64), nullable=False),  # payment id or event id
    Column("payload", Text, nullable=False),  # JSON
    Column("created_ms", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_sent_ms", Integer, nullable=True),
    Column("acked_ms", Integer, nullable=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(48), nullable=False),
    Column("severity", String(8), nullable=False),  # info | warning | error
    Column("data", Text, nullable=False),  # JSON
    Column("at_ms", Integer, nullable=False),
)

# Bills in the cassette since the last encashment, per denomination (M7).
cassette = Table(
    "cassette",
    metadata,
    Column("amount_minor", Integer, primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("count", Integer, nullable=False),
)

encashments = Table(
    "encashments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at_ms", Integer, nullable=False),
    Column("technician", String(64), nullable=False),
    Column("bill_count", Integer, nullable=False),
    Column("total_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("report", Text, nullable=False),  # JSON: per-denomination counts
)

# Revision 0002: what the desk told the terminal.
desk_commands = Table(
    "desk_commands",
    metadata,
    Column("command_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("received_ms", Integer, nullable=False),
    Column("result", Text, nullable=False),  # JSON
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_ms", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("sha256", name="uq_config_versions_sha256"),
)

# Revision 0003: who this ledger is (one row). The same identity is kept, with the highest
# payment and event numbers ever reserved, in the marker file beside the ledger
# (kiosk/ledger/identity.py), so a lost or replaced ledger is noticed and numbers never repeat.
ledger_identity = Table(
    "ledger_identity",
    metadata,
    Column("ledger_id", String(32), primary_key=True),
    Column("terminal_id", String(32), nullable=False),
    Column("created_ms", Integer, nullable=False),
    Column("number_base", Integer, nullable=False),  # payment numbers start above this
    Column("previous_ledger_id", String(32), nullable=True),
    Column("how", Text, nullable=False),  # first start | upgraded | technician init | ...
)

# Indexes the migrations create (0001), declared here too so the metadata is the whole
# schema: tests/core/test_schema_drift.py compares it with a migrated ledger.
Index("ix_sessions_state", sessions.c.state)
Index("ix_escrows_state", escrows.c.state)
Index("ix_payments_status", payments.c.status)
Index("ix_payment_history_payment", payment_history.c.payment_id)
Index("ix_stacked_bills_session", stacked_bills.c.session_id)
Index("ix_stacked_bills_payment", stacked_bills.c.payment_id)
Index("ix_outbox_pending", outbox.c.acked_ms, outbox.c.id)
