"""The desk's database: opening it (SQLite file or PostgreSQL URL), migrating it, and
every read and write the desk makes (SQLAlchemy Core, parameterised).

- SQLite (the embedded default, `make demo`): WAL, synchronous=FULL, and BEGIN IMMEDIATE
  for every transaction, so several worker processes on one file serialise their
  writers instead of failing half-way.
- PostgreSQL (a network of desks): `postgresql://…` (psycopg 3). Migrations take an
  advisory lock, so workers starting together migrate once.

Idempotency lives in the keys (schema.py): a record committed twice — two workers, or a
redelivery after a killed one — is a duplicate, never a second payment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    or_,
    pool,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from kiosk import schema_versions
from sync.desk_service import schema as s
from sync.desk_service.search import normalise_digits

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_S = 30.0  # several worker processes share one file: wait, never fail
WAL_RETRY_S = 0.05  # between attempts to switch a new file to WAL
PG_CONNECT_TIMEOUT_S = 5
MIGRATION_LOCK = 0x6B696F736B  # pg_advisory_xact_lock key ("kiosk")
QUARANTINE_HEAD = 4096  # bytes of a quarantined payload kept (its size and sha256 in full)
INT64_MAX = 2**63 - 1
REF_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class DeskDBError(RuntimeError):
    """The desk database cannot be used as it is; the message says what to do."""


def now_ms() -> int:
    return int(time.time() * 1000)


def database_url(target: str | Path) -> str:
    """A path (SQLite file) or a URL; `postgresql://` gets the psycopg 3 driver."""
    text = str(target)
    if "://" not in text:
        return f"sqlite+pysqlite:///{Path(text)}"
    url = make_url(text)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _set_wal(cur: sqlite3.Cursor) -> None:
    """Two desk processes opening a new file at once (an operator starts two watchers):
    the switch to WAL answers "database is locked" at once, without consulting the busy
    timeout, so it is retried for as long as a busy write would be waited for."""
    deadline = time.monotonic() + SQLITE_BUSY_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_S)


def make_engine(target: str | Path) -> Engine:
    url = database_url(target)
    if url.startswith("sqlite"):
        memory = str(target) == ":memory:"  # one connection, or each would be another db
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "isolation_level": None,
                               "timeout": SQLITE_BUSY_S},
            poolclass=pool.StaticPool if memory else None)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            _set_wal(cur)
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True,
                         connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})


def alembic_config() -> AlembicConfig:
    return schema_versions.alembic_config(MIGRATIONS)


def head_revision() -> str:
    return schema_versions.head_revision(MIGRATIONS)


current_revision = schema_versions.current_revision


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`. Safe on every start and from several workers at
    once (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock for the transaction)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        names = set(inspect(conn).get_table_names())
        if "records" in names and "alembic_version" not in names:
            raise DeskDBError(
                f"{engine.url.render_as_string()}: a desk file of the old, unversioned "
                "format; move it away (terminals resend what the desk has not acknowledged)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def database_lost(exc: BaseException) -> bool:
    """The database is unreachable or failing (not this message's fault): retry later,
    acknowledge nothing meanwhile."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _int(value: Any) -> int | None:
    return value if type(value) is int and -INT64_MAX <= value <= INT64_MAX else None


def _str(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def record_problem(r: Any, kind: str) -> str | None:
    """Why a record of a verified batch cannot be stored as it is, or None."""
    if not isinstance(r, dict):
        return "record is not an object"
    seq, ref, data = r.get("seq"), r.get("ref"), r.get("data")
    if type(seq) is not int or not 1 <= seq <= INT64_MAX:
        return f"seq {str(seq)[:24]!r} is not a positive 64-bit integer"
    if not isinstance(ref, str) or not REF_RE.match(ref):
        return f"ref {str(ref)[:24]!r} is not an id"
    if not isinstance(data, dict):
        return "data is not an object"
    count = data.get("reprocess_count", 0)
    if kind == "payment" and (type(count) is not int or not 0 <= count < 2**31):
        return "reprocess_count is not a small non-negative integer"
    return None


@dataclass
class CommitStats:
    """What one commit did (merged into the desk's counters only once it committed)."""

    records: int = 0
    duplicates: int = 0
    new_payments: int = 0
    new_events: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)


_SELECT_RECORDS = select(s.records.c.seq, s.records.c.ref, s.records.c.data).where(
    s.records.c.terminal_id == bindparam("t"),
    s.records.c.seq.in_(bindparam("seqs", expanding=True)))
_SELECT_PAYMENTS = select(s.payments.c.payment_id, s.payments.c.reprocess_count,
                          s.payments.c.data).where(
    s.payments.c.terminal_id == bindparam("t"),
    s.payments.c.payment_id.in_(bindparam("ids", expanding=True)))


def payment_row(terminal_id: str, ref: str, count: int, seq: int, data: dict[str, Any],
                 text: str, received_ms: int) -> dict[str, Any]:
    """A `payments` row: the record's JSON and the columns the operator searches."""
    return dict(
        terminal_id=terminal_id, payment_id=ref, reprocess_count=count, seq=seq,
        kind="unclaimed" if data.get("kind") == "unclaimed" else "payment",
        status=_str(data.get("status"), s.SHORT),
        provider_id=_str(data.get("provider_id"), s.SHORT),
        account=_str(data.get("account"), s.REF),
        account_digits=(normalise_digits(_str(data.get("account"), 256)) or "")[: s.REF]
        or None,
        inserted_minor=_int(data.get("inserted_minor")),
        credited_minor=_int(data.get("credited_minor")),
        currency=_str(data.get("currency"), 8),
        created_ms=_int(data.get("created_ms")),
        data=text, received_ms=received_ms)


class _RawSQL:
    """`store.db.execute(sql)` for older callers (bench/fleet.py sets a busy timeout,
    which the engine now sets itself)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(sql, params)


class DeskDB:
    """The desk's own ledger of what it received, and the operator's view."""

    def __init__(self, target: str | Path | Engine, migrate_now: bool = True) -> None:
        self.engine = target if isinstance(target, Engine) else make_engine(target)
        if migrate_now:
            migrate(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def db(self) -> _RawSQL:
        return _RawSQL(self.engine)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def close(self) -> None:
        self.engine.dispose()

    # -- records -----------------------------------------------------------------------
    def commit_records(
        self, conn: Connection, terminal_id: str, kind: str, records: list[dict[str, Any]],
        stats: CommitStats, received_ms: int,
    ) -> list[int]:
        """Insert what is new; return every seq to acknowledge (new, repeated and
        conflicting: each is kept here). Records must have passed record_problem.

        A repeat is the same record again (same seq, same content). The same seq or the
        same payment id (and reprocess count) with *different* content is a conflict —
        e.g. a terminal whose ledger was replaced numbering from 1 again: it is stored
        in `conflicts` in full and reported, never taken for a duplicate. Two workers
        inserting the same key at once: the loser's statement fails on the key and the
        caller retries the batch, which then finds a duplicate.

        Set-based: one SELECT per table for the whole batch and one multi-row INSERT
        each (a statement per record cost ~0.4 ms in SQLAlchemy: the desk became the
        drain's bottleneck)."""
        if not records:
            return []
        r_t, p_t = s.records, s.payments
        # what the desk holds already for these seqs and payment ids (and, as the loop
        # goes, what this batch itself adds: the same record twice in one batch)
        seq_held: dict[int, tuple[str, str]] = {
            row.seq: (row.ref, row.data) for row in conn.execute(
                _SELECT_RECORDS, {"t": terminal_id, "seqs": [r["seq"] for r in records]})}
        pay_held: dict[tuple[str, int], str] = {}
        if kind == "payment":
            pay_held = {(row.payment_id, row.reprocess_count): row.data
                        for row in conn.execute(_SELECT_PAYMENTS, {
                            "t": terminal_id,
                            "ids": sorted({r["ref"] for r in records})})}
        seqs: list[int] = []
        new_records: list[dict[str, Any]] = []
        new_payments: list[dict[str, Any]] = []
        new_conflicts: list[dict[str, Any]] = []
        for r in records:
            seq, ref, data = r["seq"], r["ref"], r["data"]
            text = _dumps(data)
            count = int(data.get("reprocess_count", 0)) if kind == "payment" else None
            stats.records += 1
            seqs.append(seq)
            held = seq_held.get(seq)
            clash = held is not None and held != (ref, text)
            if kind == "payment" and not clash:
                prior = pay_held.get((ref, count))  # type: ignore[arg-type]
                clash = prior is not None and prior != text
                if held is None and prior is not None:
                    held = (ref, prior)
            if clash:
                assert held is not None
                new_conflicts.append(dict(
                    terminal_id=terminal_id, seq=seq, kind=kind, ref=ref,
                    reprocess_count=count, stored=held[1], received=text,
                    received_ms=received_ms))
                stats.conflicts.append({"seq": seq, "ref": ref, "kind": kind,
                                        "reprocess_count": count})
                continue
            if held is not None:
                stats.duplicates += 1
                continue
            seq_held[seq] = (ref, text)
            new_records.append(dict(terminal_id=terminal_id, seq=seq, kind=kind, ref=ref,
                                    data=text, received_ms=received_ms))
            if kind == "payment":
                pay_held[(ref, count)] = text  # type: ignore[index]
                new_payments.append(payment_row(terminal_id, ref, count or 0, seq, data,
                                                 text, received_ms))
                stats.new_payments += 1
            else:
                stats.new_events += 1
        if new_records:
            conn.execute(insert(r_t), new_records)
        if new_payments:
            conn.execute(insert(p_t), new_payments)
        if new_conflicts:
            conn.execute(insert(s.conflicts), new_conflicts)
        return seqs

    def quarantine(self, conn: Connection, topic: str, terminal_id: str | None, reason: str,
                   detail: str, payload: bytes, received_ms: int) -> None:
        conn.execute(insert(s.quarantine).values(
            topic=topic[:256], terminal_id=terminal_id, reason=reason[: s.SHORT],
            detail=detail[:2000], size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            payload_head=bytes(payload[:QUARANTINE_HEAD]), received_ms=received_ms))

    # -- terminal state, health, results ----------------------------------------------
    def _terminal_row(self, conn: Connection, terminal_id: str) -> None:
        if conn.execute(select(s.terminals.c.terminal_id).where(
                s.terminals.c.terminal_id == terminal_id)).first() is None:
            conn.execute(insert(s.terminals).values(terminal_id=terminal_id))

    def save_state(self, conn: Connection, terminal_id: str, value: dict[str, Any] | None,
                   received_ms: int) -> bool:
        """Latest state; an `offline` of an older connection than the latest `online`
        changes nothing (returns False)."""
        self._terminal_row(conn, terminal_id)
        t = s.terminals
        state = _str(value.get("state"), 16) if value else None
        cid = _str(value.get("connection_id"), s.SHORT) if value else None
        stmt = update(t).where(t.c.terminal_id == terminal_id).values(
            state=state, connection_id=cid,
            state_at_ms=_int(value.get("at_ms")) if value else None,
            state_received_ms=received_ms, state_data=_dumps(value))
        if state == "offline":
            stmt = stmt.where(or_(t.c.state.is_(None), t.c.state != "online",
                                  t.c.connection_id.is_(None), t.c.connection_id == cid))
        return conn.execute(stmt).rowcount == 1

    def save_health(self, conn: Connection, terminal_id: str, value: dict[str, Any] | None,
                    received_ms: int) -> None:
        self._terminal_row(conn, terminal_id)
        t = s.terminals
        at = _int(value.get("at_ms")) if value else None
        conn.execute(update(t).where(t.c.terminal_id == terminal_id).values(
            health=_dumps(value), health_at_ms=at, health_received_ms=received_ms))
        if value is None or at is None:
            return
        h = s.health_history
        seen = conn.execute(select(h.c.id).where(
            h.c.terminal_id == terminal_id, h.c.at_ms == at)).first()
        if seen is None:
            conn.execute(insert(h).values(terminal_id=terminal_id, at_ms=at,
                                          received_ms=received_ms, data=_dumps(value)))

    def save_result(self, conn: Connection, terminal_id: str, cmd_id: str,
                    body: dict[str, Any], received_ms: int) -> None:
        c = s.commands
        values = dict(ok=body.get("ok") if isinstance(body.get("ok"), bool) else None,
                      error=_str(body.get("error"), s.SHORT), result=_dumps(body),
                      result_ms=received_ms)
        done = conn.execute(update(c).where(c.c.cmd_id == cmd_id).values(**values)).rowcount
        if not done:
            conn.execute(insert(c).values(
                cmd_id=cmd_id[: s.REF], terminal_id=terminal_id,
                type=_str(body.get("type"), s.SHORT) or "?", args="{}", **values))

    def record_command(self, body: dict[str, Any]) -> None:
        with self.transaction() as conn:
            c = s.commands
            # sent (again): a result held from an earlier send is not this send's answer
            values = dict(terminal_id=body["terminal_id"], type=body["type"],
                          args=_dumps(body.get("args", {})), seq=body.get("seq"),
                          issued_ms=body.get("issued_ms"), expires_ms=body.get("expires_ms"),
                          sent_ms=now_ms(), ok=None, error=None, result=None, result_ms=None)
            if not conn.execute(update(c).where(c.c.cmd_id == body["cmd_id"])
                                .values(**values)).rowcount:
                conn.execute(insert(c).values(cmd_id=body["cmd_id"], **values))

    def command_result(self, cmd_id: str) -> dict[str, Any] | None:
        """A command's result as stored by whichever worker received it (on a shared
        subscription that need not be the one that sent the command)."""
        c = s.commands
        with self.engine.connect() as conn:
            text = conn.execute(select(c.c.result).where(c.c.cmd_id == cmd_id,
                                                         c.c.result_ms.is_not(None))).scalar()
        if not text:
            return None
        value = json.loads(text)
        return value if isinstance(value, dict) else None

    # -- counters ----------------------------------------------------------------------
    def next_seq(self, terminal_id: str, kid: str) -> int:
        """Per terminal and desk key: 1, 2, 3 … — never derived from a clock."""
        c = s.cmd_seq
        with self.transaction() as conn:
            where = (c.c.terminal_id == terminal_id, c.c.kid == kid)
            if conn.execute(update(c).where(*where).values(last=c.c.last + 1)).rowcount == 0:
                conn.execute(insert(c).values(terminal_id=terminal_id, kid=kid, last=1))
            return int(conn.execute(select(c.c.last).where(*where)).scalar_one())

    def raise_seq(self, terminal_id: str, kid: str, at_least: int) -> None:
        """The terminal said (signed) its high-water mark: continue above it."""
        c = s.cmd_seq
        with self.transaction() as conn:
            where = (c.c.terminal_id == terminal_id, c.c.kid == kid)
            last = conn.execute(select(c.c.last).where(*where)).scalar()
            if last is None:
                conn.execute(insert(c).values(terminal_id=terminal_id, kid=kid, last=at_least))
            elif last < at_least:
                conn.execute(update(c).where(*where).values(last=at_least))

    def next_status_version(self, terminal_id: str, payment_id: str) -> int:
        v = s.status_versions
        with self.transaction() as conn:
            where = (v.c.terminal_id == terminal_id, v.c.payment_id == payment_id)
            if conn.execute(update(v).where(*where)
                            .values(version=v.c.version + 1)).rowcount == 0:
                conn.execute(insert(v).values(terminal_id=terminal_id, payment_id=payment_id,
                                              version=1))
            return int(conn.execute(select(v.c.version).where(*where)).scalar_one())

    def record_statuses(self, terminal_id: str, statuses: list[dict[str, Any]]) -> None:
        with self.transaction() as conn:
            for st in statuses:
                conn.execute(insert(s.statuses_sent).values(
                    terminal_id=terminal_id, payment_id=st["payment_id"],
                    reprocess_count=st.get("reprocess_count"), version=st["version"],
                    status=st["status"], detail=st.get("detail"), sent_ms=now_ms()))

    def published_config(self, topic: str) -> int | None:
        c = s.config_published
        with self.engine.connect() as conn:
            row = conn.execute(select(c.c.version).where(c.c.topic == topic)).scalar()
        return None if row is None else int(row)

    def record_config(self, topic: str, version: int,
                      body: dict[str, Any] | None = None) -> None:
        """The version (and the whole body) of a config document published on `topic`.
        The body is kept only with the newest version: the next document is built on it."""
        c = s.config_published
        text = None if body is None else _dumps(body)
        with self.transaction() as conn:
            old = conn.execute(select(c.c.version).where(c.c.topic == topic)).scalar()
            if old is None:
                conn.execute(insert(c).values(topic=topic, version=version,
                                              published_ms=now_ms(), body=text))
            elif version >= int(old):
                conn.execute(update(c).where(c.c.topic == topic).values(
                    version=version, published_ms=now_ms(), body=text))
            else:
                conn.execute(update(c).where(c.c.topic == topic).values(
                    published_ms=now_ms()))

    def claim_config(self, topic: str, previous: int | None, version: int,
                     body: dict[str, Any]) -> bool:
        """Take `version` for the next document on `topic` if the newest recorded is still
        `previous` (None: none yet): compare-and-set, so two workers building on the same
        document cannot both publish the same version. False: another worker was first;
        read the newest again and build on it."""
        c = s.config_published
        text = _dumps(body)
        try:
            with self.transaction() as conn:
                if previous is None:
                    if conn.execute(select(c.c.topic).where(c.c.topic == topic)).first():
                        return False
                    conn.execute(insert(c).values(topic=topic, version=version,
                                                  published_ms=now_ms(), body=text))
                    return True
                done = conn.execute(update(c).where(c.c.topic == topic,
                                                    c.c.version == previous).values(
                    version=version, published_ms=now_ms(), body=text)).rowcount
                return done == 1
        except IntegrityError:  # two first documents at once: the other insert won
            return False

    def carry_in_config(self, topic: str, fields: dict[str, Any]) -> bool:
        """Set `fields` in the kept body of the last config document without publishing
        (a terminal's phone set by a command: the next document must not put back the
        phone of the last one). False when no body is kept for `topic`."""
        c = s.config_published
        with self.transaction() as conn:
            text = conn.execute(select(c.c.body).where(c.c.topic == topic)).scalar()
            body = json.loads(text) if text else None
            if not isinstance(body, dict):
                return False
            conn.execute(update(c).where(c.c.topic == topic).values(
                body=_dumps({**body, **fields})))
        return True

    def last_config(self, topic: str) -> tuple[int, dict[str, Any] | None] | None:
        """(version, body) of the newest config document published on `topic`; the body
        is None when it was published before the desk kept bodies (revision d0003)."""
        c = s.config_published
        with self.engine.connect() as conn:
            row = conn.execute(select(c.c.version, c.c.body).where(c.c.topic == topic)).first()
        if row is None:
            return None
        body = json.loads(row.body) if row.body else None
        return int(row.version), body if isinstance(body, dict) else None

    # -- reads (the operator's view) ---------------------------------------------------
    def _rows(self, stmt: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings().all()]

    def known_payment(self, terminal_id: str, payment_id: str) -> int | None:
        """The highest reprocess_count the desk holds for a payment, or None."""
        p = s.payments
        with self.engine.connect() as conn:
            row = conn.execute(select(func.max(p.c.reprocess_count)).where(
                p.c.terminal_id == terminal_id, p.c.payment_id == payment_id)).scalar()
        return None if row is None else int(row)

    def latest_account(self, terminal_id: str, payment_id: str) -> str | None:
        """The account of the newest version the desk holds of a payment (or unclaimed
        credit), or None: what a correction read out by a customer is compared with."""
        p = s.payments
        with self.engine.connect() as conn:
            row = conn.execute(select(p.c.account).where(
                p.c.terminal_id == terminal_id, p.c.payment_id == payment_id)
                .order_by(p.c.reprocess_count.desc()).limit(1)).first()
        return None if row is None else row[0]

    def payments(self, terminal_id: str | None = None, kind: str | None = None
                 ) -> list[dict[str, Any]]:
        p = s.payments
        stmt = select(p.c.terminal_id, p.c.payment_id, p.c.reprocess_count, p.c.seq,
                      p.c.data)
        if terminal_id:
            stmt = stmt.where(p.c.terminal_id == terminal_id)
        if kind:
            stmt = stmt.where(p.c.kind == kind)
        rows = self._rows(stmt.order_by(p.c.terminal_id, p.c.seq))
        return [{**r, "data": json.loads(r["data"])} for r in rows]

    def unclaimed(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        return self.payments(terminal_id, kind="unclaimed")

    def events(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        r_t = s.records
        stmt = select(r_t.c.terminal_id, r_t.c.seq, r_t.c.data).where(r_t.c.kind == "event")
        if terminal_id:
            stmt = stmt.where(r_t.c.terminal_id == terminal_id)
        rows = self._rows(stmt.order_by(r_t.c.terminal_id, r_t.c.seq))
        return [{"terminal_id": r["terminal_id"], "seq": r["seq"], **json.loads(r["data"])}
                for r in rows]

    def conflicts(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        c = s.conflicts
        stmt = select(c.c.terminal_id, c.c.seq, c.c.kind, c.c.ref, c.c.reprocess_count,
                      c.c.stored, c.c.received, c.c.received_ms)
        if terminal_id:
            stmt = stmt.where(c.c.terminal_id == terminal_id)
        return self._rows(stmt.order_by(c.c.id))

    def quarantined(self) -> list[dict[str, Any]]:
        q = s.quarantine
        return self._rows(select(q).order_by(q.c.id))

    def terminals(self) -> list[dict[str, Any]]:
        t = s.terminals
        return self._rows(select(t).order_by(t.c.terminal_id))

    def health_history(self, terminal_id: str) -> list[dict[str, Any]]:
        h = s.health_history
        return self._rows(select(h).where(h.c.terminal_id == terminal_id).order_by(h.c.at_ms))

    def commands(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        c = s.commands
        stmt = select(c)
        if terminal_id:
            stmt = stmt.where(c.c.terminal_id == terminal_id)
        return self._rows(stmt.order_by(c.c.sent_ms, c.c.cmd_id))

    def statuses_sent(self, terminal_id: str | None = None) -> list[dict[str, Any]]:
        st = s.statuses_sent
        stmt = select(st)
        if terminal_id:
            stmt = stmt.where(st.c.terminal_id == terminal_id)
        return self._rows(stmt.order_by(st.c.id))
