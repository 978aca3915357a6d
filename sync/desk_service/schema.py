"""The desk database: one SQLAlchemy Core schema for SQLite (embedded) and PostgreSQL.

Keys are what make a delivery idempotent when several workers (or a redelivery after a
killed worker) see the same record: `records` (terminal, seq) and `payments` (terminal,
payment id, reprocess count). Everything the operator's view needs is here too: the
latest state and health of each terminal, the health history, commands and their
results, statuses sent, conflicts and the quarantine of messages that could not be
taken. Changes go through an Alembic revision in sync/desk_service/migrations/versions/
(tests/desk/test_schema.py fails when this file and the migrations disagree).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

TERMINAL = 32  # topics.TERMINAL_ID_RE: at most 32 characters
REF = 64
SHORT = 64

records = Table(
    "records", metadata,
    Column("terminal_id", String(TERMINAL), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # payment | event
    Column("ref", String(REF), nullable=False),
    Column("data", Text, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("terminal_id", "seq", name="pk_records"),
)

payments = Table(
    "payments", metadata,
    Column("terminal_id", String(TERMINAL), nullable=False),
    Column("payment_id", String(REF), nullable=False),
    Column("reprocess_count", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # payment | unclaimed
    Column("status", String(SHORT)),
    Column("provider_id", String(SHORT)),
    Column("account", String(REF)),
    Column("account_digits", String(REF)),  # sync/desk_service/search.py normalise_digits
    Column("inserted_minor", BigInteger),
    Column("credited_minor", BigInteger),
    Column("currency", String(8)),
    Column("created_ms", BigInteger),
    Column("data", Text, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("terminal_id", "payment_id", "reprocess_count", name="pk_payments"),
    Index("ix_payments_account_digits", "account_digits"),
    Index("ix_payments_created_ms", "created_ms"),
    Index("ix_payments_payment_id", "payment_id"),
)

conflicts = Table(
    "conflicts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", String(TERMINAL), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("ref", String(REF), nullable=False),
    Column("reprocess_count", Integer),
    Column("stored", Text, nullable=False),
    Column("received", Text, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", String(256), nullable=False),
    Column("terminal_id", String(TERMINAL)),  # from the topic, when it names one
    Column("reason", String(SHORT), nullable=False),  # stable code (docs/desk.md)
    Column("detail", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("payload_head", LargeBinary, nullable=False),  # the first QUARANTINE_HEAD bytes
    Column("received_ms", BigInteger, nullable=False),
    Index("ix_quarantine_received_ms", "received_ms"),
)

cmd_seq = Table(
    "cmd_seq", metadata,
    Column("terminal_id", String(TERMINAL), nullable=False),
    Column("kid", String(SHORT), nullable=False),
    Column("last", BigInteger, nullable=False),
    PrimaryKeyConstraint("terminal_id", "kid", name="pk_cmd_seq"),
)

status_versions = Table(
    "status_versions", metadata,
    Column("terminal_id", String(TERMINAL), nullable=False),
    Column("payment_id", String(REF), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("terminal_id", "payment_id", name="pk_status_versions"),
)

statuses_sent = Table(
    "statuses_sent", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", String(TERMINAL), nullable=False),
    Column("payment_id", String(REF), nullable=False),
    Column("reprocess_count", Integer),
    Column("version", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text),
    Column("sent_ms", BigInteger, nullable=False),
    UniqueConstraint("terminal_id", "payment_id", "version", name="uq_statuses_sent"),
)

config_published = Table(
    "config_published", metadata,
    Column("topic", String(256), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("published_ms", BigInteger, nullable=False),
    # the whole body of that document (revision d0003): a retained document replaces the
    # previous one, so the next one is built from this plus the change
    Column("body", Text),
)

commands = Table(
    "commands", metadata,
    Column("cmd_id", String(REF), primary_key=True),
    Column("terminal_id", String(TERMINAL), nullable=False),
    Column("type", String(SHORT), nullable=False),
    Column("args", Text, nullable=False),
    Column("seq", BigInteger),
    Column("issued_ms", BigInteger),
    Column("expires_ms", BigInteger),
    Column("sent_ms", BigInteger),  # null: a result for a command sent from elsewhere
    Column("ok", Boolean),
    Column("error", String(SHORT)),
    Column("result", Text),
    Column("result_ms", BigInteger),
    Index("ix_commands_terminal", "terminal_id"),
)

terminals = Table(
    "terminals", metadata,
    Column("terminal_id", String(TERMINAL), primary_key=True),
    Column("state", String(16)),  # online | offline | null (cleared)
    Column("connection_id", String(SHORT)),
    Column("state_at_ms", BigInteger),
    Column("state_received_ms", BigInteger),
    Column("state_data", Text),
    Column("health", Text),
    Column("health_at_ms", BigInteger),
    Column("health_received_ms", BigInteger),
)

health_history = Table(
    "health_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", String(TERMINAL), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    # the same retained health is delivered again to every worker that (re)subscribes
    UniqueConstraint("terminal_id", "at_ms", name="uq_health_history"),
    Index("ix_health_history_received_ms", "received_ms"),  # retention (d0004)
)

# -- the operator's page (revision d0002): accounts, sessions, login throttling, audit --
LOGIN = 64

operators = Table(
    "operators", metadata,
    Column("login", String(LOGIN), primary_key=True),
    Column("password_hash", String(256), nullable=False),  # scrypt$N$r$p$salt$hash
    Column("role", String(16), nullable=False),  # viewer | operator | admin
    Column("locked", Boolean, nullable=False),  # by an admin: no login at all
    Column("failures", Integer, nullable=False),  # consecutive wrong passwords
    Column("locked_until_ms", BigInteger),  # after too many failures (stored: a restart
    Column("created_ms", BigInteger, nullable=False),  # does not lift it)
)

web_sessions = Table(
    "web_sessions", metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 of the cookie's token
    Column("login", String(LOGIN), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Index("ix_web_sessions_login", "login"),
)

login_attempts = Table(
    "login_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client", String(64), nullable=False),  # the address the page saw
    Column("login", String(LOGIN)),
    Column("at_ms", BigInteger, nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_login_attempts_client_at", "client", "at_ms"),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("login", String(LOGIN)),  # null: nobody logged in (a refused login's name is
    Column("client", String(64)),  # in `target`)
    Column("action", String(SHORT), nullable=False),
    Column("outcome", String(16), nullable=False),  # ok | refused | failed
    Column("terminal_id", String(TERMINAL)),
    Column("target", String(REF)),  # payment id, login, …
    Column("detail", Text),
    Index("ix_audit_at", "at_ms"),
    Index("ix_audit_target", "target"),
)

# One row per desk worker with `--partition K/N` (sync/desk_service/takeover.py): the beat
# counter goes up while its broker link is up; the others watch it change by their own
# clocks (never comparing two hosts' clocks) and take over a partition whose beat stopped.
desk_workers = Table(
    "desk_workers", metadata,
    Column("client_id", String(SHORT), primary_key=True),
    Column("partition_k", Integer, nullable=False),
    Column("partition_n", Integer, nullable=False),
    Column("beat", BigInteger, nullable=False),
    Column("covers", String(256), nullable=False),  # partitions it takes now, e.g. "0/3,2/3"
    Column("seen_ms", BigInteger, nullable=False),  # its own clock: for people, not rules
)
