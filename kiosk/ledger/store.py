"""The ledger: every money fact of the terminal, each written in one durable transaction.

What each method guarantees, and the invariants it serves:
- record_escrow: the STACK decision is on disk before STACK is sent (M3, M6).
- record_stacked: a stacked bill is committed once per acceptor event, counted in the
  cassette in the same transaction (M1, M2, M7); one that belongs to no collecting session
  becomes an unclaimed-credit record at once (M6).
- finish_session: the payment and its immutable id are committed, together with its outbox
  message, before any receipt is printed (M5, M8).
- reconcile: after a crash, nothing stacked stays outside a payment or unclaimed record (M6);
  an escrow whose outcome was lost is reported to the desk (`escrow_outcome_unknown`).
- open / the identity marker (kiosk/ledger/identity.py): payment numbers and event ids never
  repeat for a terminal, even when the ledger file is lost or replaced (M5); a terminal that
  has run before does not silently start a new ledger.
Any write failure raises LedgerError so the engine can go out of service (M10); so does a
ledger file deleted or replaced under the running core (check_file).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    Executable,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from drivers.acceptor import StackOrigin
from kiosk.check_code import new_check_code
from kiosk.ledger import schema as t
from kiosk.ledger.db import READ_ONLY_OPTION, make_engine, migrate
from kiosk.ledger.identity import (
    Marker,
    MarkerError,
    marker_path,
    new_ledger_id,
    read_marker,
    write_marker,
)

PAYMENT_COUNTER = "payment"
NUMBER_WIDTH = 8
UNKNOWN_AMOUNT = 0
"""`amount_minor` of a stacked bill the device did not name (see `record_stacked`)."""
UNKNOWN_BILL_TYPE = -1
"""`bill_type` of such a bill: no device index."""
UNKNOWN_BILL_REASON = "stacked bill of unknown denomination: count the cassette"
# Why an unpayable session's cash is an unclaimed record (English, for the desk)
UNCLAIMED_UNPAYABLE = "session ended below the provider's minimum or with nothing to credit"


# Hot-path statements (record_stacked); the tables are defined in kiosk/ledger/schema.py.
_SQL_ESCROW_SESSION = (
    "SELECT e.state, e.session_id, s.state, "
    "(SELECT COALESCE(SUM(b.amount_minor), 0) FROM stacked_bills b WHERE b.session_id = s.id), "
    "s.currency FROM escrows e JOIN sessions s ON s.id = e.session_id WHERE e.id = ?"
)
_SQL_ESCROW_STACKED = "UPDATE escrows SET state = 'stacked', resolved_ms = ? WHERE id = ?"
_SQL_INSERT_BILL = (
    "INSERT INTO stacked_bills (event_key, escrow_id, session_id, amount_minor, currency, "
    "bill_type, recovered, stacked_ms, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_CASSETTE_ADD = (
    "INSERT INTO cassette (amount_minor, currency, count) VALUES (?, ?, 1) "
    "ON CONFLICT (amount_minor, currency) DO UPDATE SET count = count + 1"
)


class LedgerError(RuntimeError):
    """The ledger cannot read or write (disk full, I/O error, read-only, corrupt)."""


class LedgerIdentityError(LedgerError):
    """The ledger here is not the one this terminal has been writing (missing, replaced,
    deleted under the running core). Only a technician can resolve it: the core stays out
    of service (`kiosk ledger init --new`, docs/ledger.md)."""


SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")


class PaymentStatus:
    COLLECTING = "collecting"
    CONFIRMED = "confirmed"
    QUEUED = "queued"
    SENT = "sent"
    ACCEPTED = "accepted"
    PROCESSED = "processed"
    FAILED = "failed"
    REPROCESSED = "reprocessed"
    UNCLAIMED = "unclaimed"


@dataclass(frozen=True)
class StackOutcome:
    """What a stacked-bill report turned into.

    kind: "credited" (added to the collecting session), "unclaimed" (own record),
    "duplicate" (this event was recorded before: nothing changes).
    """

    kind: str
    session_id: int | None = None
    session_inserted_minor: int = 0
    unclaimed_id: str | None = None


@dataclass(frozen=True)
class ReconcileReport:
    recovered_payments: tuple[str, ...]
    abandoned_sessions: int
    expired_escrows: int
    unclaimed_records: tuple[str, ...]


class PaymentKind:
    """payments.kind: a customer's payment, or money with no confirmed account (M6)."""

    PAYMENT = "payment"
    UNCLAIMED = "unclaimed"


@dataclass(frozen=True)
class NewPayment:
    """A payments row just created (LedgerTx.create_payment): its immutable id (M5) and
    its amounts (M9: the commission never exceeds the cash, no change is given)."""

    id: str
    number: int
    inserted_minor: int
    commission_minor: int
    credited_minor: int


AnyResult = CursorResult[*tuple[Any, ...]]
"""What LedgerRead.execute returns: SQLAlchemy's result, rows of any shape."""

TUNABLE_PRAGMAS = frozenset({"cache_size", "page_count", "max_page_count", "query_only"})
"""PRAGMAs Ledger.pragma lets callers read or set: memory (the sync layer's page cache)
and the disk-fault states the tests simulate. journal_mode, synchronous and the like are
not here: they decide whether a commit is on disk (M2)."""
_PRAGMA_VALUE = re.compile(r"-?[0-9]+|[A-Za-z]+")


class LedgerRead:
    """An open read of the ledger, valid inside its `with ledger.read()` block.

    The door for modules beside store.py: they build SQLAlchemy Core statements on the
    tables of kiosk/ledger/schema.py and run them here, never on the ledger's insides."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def execute(self, statement: Executable, parameters: Any = None) -> AnyResult:
        """Run a statement (a list of parameter dicts runs it once per dict)."""
        return self._conn.execute(statement, parameters)

    def scalar(self, statement: Executable) -> Any:
        """The first column of the first row, or None."""
        return self._conn.execute(statement).scalar()


class LedgerTx(LedgerRead):
    """An open write transaction, valid inside its `with ledger.transaction()` block.

    Everything done through it commits together, durably, or not at all. `now_ms` is the
    transaction's time: use it for every timestamp written in it."""

    def __init__(self, ledger: Ledger, conn: Connection, now_ms: int) -> None:
        super().__init__(conn)
        self._ledger = ledger
        self.now_ms = now_ms

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested part that an exception undoes alone (the exception still propagates;
        the outer transaction goes on if the caller catches it)."""
        with self._conn.begin_nested():
            yield

    def create_payment(
        self,
        kind: str,
        inserted_minor: int,
        currency: str,
        note: str | None,
        *,
        commission: Callable[[int], int] | None = None,
        provider_id: str | None = None,
        account: str | None = None,
        session_id: int | None = None,
        detail: str | None = None,
    ) -> NewPayment:
        """A new payments row with the next payment number (reserved in the identity
        marker before this transaction commits: no id is ever issued twice, M5).

        PaymentKind.PAYMENT: status queued, `commission(inserted)` kept within 0..cash
        (M9), history confirmed (`detail`, else `note`) then queued.
        PaymentKind.UNCLAIMED: status unclaimed, no commission, history unclaimed (`note`).
        Bills, the outbox message and events are the caller's: they differ by case."""
        return self._ledger._insert_payment(
            self._conn, kind, inserted_minor, currency, note, self.now_ms,
            commission=commission, provider_id=provider_id, account=account,
            session_id=session_id, detail=detail,
        )

    def add_history(self, payment_id: str, status: str, detail: str | None = None) -> None:
        """A payment_history row: every status change of a payment leaves one."""
        self._ledger._history(self._conn, payment_id, status, detail, self.now_ms)

    def payment_payload(self, payment_id: str) -> dict[str, Any]:
        """The payment as the desk receives it (with terminal_id, ledger_id, bills)."""
        return self._ledger._payment_payload(self._conn, payment_id)

    def enqueue(self, kind: str, ref: str, payload: dict[str, Any]) -> int:
        """A message for the desk in the outbox (M8); returns its sequence number."""
        return self._ledger._enqueue(self._conn, kind, ref, payload, self.now_ms)

    def add_event(self, kind: str, severity: str, data: dict[str, Any]) -> None:
        """An event in this transaction (it reaches the desk with it, or not at all)."""
        self._ledger._event(self._conn, kind, severity, data, self.now_ms)


def _unclaim_session(tx: LedgerTx, session_id: int, reason: str) -> tuple[str, int] | None:
    """Ledger.unclaim_session inside an open transaction."""
    s = tx.execute(select(t.sessions).where(t.sessions.c.id == session_id)).one()
    if s.state != "collecting":
        return None
    b = t.stacked_bills
    cash = int(tx.scalar(select(func.coalesce(func.sum(b.c.amount_minor), 0))
                         .where(b.c.session_id == session_id)))
    if cash == 0:
        return None
    record = tx.create_payment(PaymentKind.UNCLAIMED, cash, s.currency, reason,
                               provider_id=s.provider_id, account=s.account,
                               session_id=session_id)
    tx.execute(update(b).where(b.c.session_id == session_id).values(payment_id=record.id))
    tx.execute(update(t.sessions).where(t.sessions.c.id == session_id).values(
        state="finished", payment_id=record.id, inserted_minor=cash, updated_ms=tx.now_ms))
    tx.enqueue("payment", record.id, tx.payment_payload(record.id))
    tx.add_event("unclaimed_credit", "warning", {
        "record_id": record.id, "amount_minor": cash, "currency": s.currency,
        "reason": reason, "session_id": session_id})
    return record.id, cash


def _new_id(result: AnyResult) -> int:
    """The id SQLite gave the row an INSERT just made."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise LedgerError("the ledger returned no id for a new row")
    return int(key[0])


def _describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc)


class Ledger:
    def __init__(
        self,
        path: Path,
        terminal_id: str,
        clock: Callable[[], float] = time.time,
        run_id: str | None = None,
    ) -> None:
        self.path = path
        self.terminal_id = terminal_id
        self._clock = clock
        self.run_id = run_id or uuid.uuid4().hex[:16]
        self._lock = threading.RLock()
        self._engine: Engine | None = None
        self._db: sqlite3.Connection | None = None
        self.marker_path = marker_path(path)
        self._marker: Marker | None = None
        self._file_id: tuple[int, int] | None = None
        self.ledger_id: str | None = None
        # Why the ledger refuses all work (identity problem); None when it is usable.
        self.blocked: str | None = None

    # -- plumbing ----------------------------------------------------------------------
    def open(self) -> None:
        """Open (creating on a terminal's very first start) and check the identity.

        Raises LedgerIdentityError, leaving `blocked` set, when the terminal has run before
        (its marker exists) and the ledger is missing or is another one: nothing is created
        or changed then; every later call raises the same reason until initialise_new.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the data directory {self.path.parent}: {exc.strerror}"
            ) from exc
        try:
            marker = read_marker(self.marker_path)
        except MarkerError as exc:
            self._block(f"{exc}; a technician must check it (docs/ledger.md)")
        present = self.path.exists() and self.path.stat().st_size > 0
        if not present and marker is not None:
            self._block(
                f"the ledger {self.path} is missing or empty, but this terminal has issued "
                f"payment numbers up to {marker.payment_reserved} in ledger {marker.ledger_id}: "
                "not starting a new one silently; a technician must run "
                "`kiosk ledger init --new`"
            )
        found = self._stored_identity() if present else None
        if marker is not None and found != marker.ledger_id:
            self._block(
                f"the ledger {self.path} is not this terminal's ledger (it is "
                f"{found or 'a ledger without identity'}, expected {marker.ledger_id}): "
                "it was replaced; a technician must run `kiosk ledger init --new`"
            )
        self._connect()
        with self._tx() as conn:
            ident = conn.execute(select(t.ledger_identity)).first()
            if ident is None:  # a first start, or a ledger from before revision 0003
                how = "upgraded" if present else "first start"
                self.ledger_id = new_ledger_id()
                self._insert_identity(conn, self.ledger_id, 0, None, how)
            else:
                self.ledger_id = ident.ledger_id
            used_payment = int(
                conn.execute(
                    select(func.coalesce(func.max(t.counters.c.value), 0)).where(
                        t.counters.c.name == PAYMENT_COUNTER
                    )
                ).scalar_one()
            )
            used_event = int(
                conn.execute(select(func.coalesce(func.max(t.events.c.id), 0))).scalar_one()
            )
            base = marker or Marker(self.terminal_id, self.ledger_id, 0, 0, self.now_ms())
            wanted = base.reserving(used_payment, used_event, self.now_ms())
            if (
                marker is None
                or wanted.payment_reserved != marker.payment_reserved
                or wanted.event_reserved != marker.event_reserved
            ):
                self._write_marker(wanted)
            else:
                self._marker = marker

    def _block(self, reason: str) -> None:
        self.blocked = reason
        raise LedgerIdentityError(reason)

    def _stored_identity(self) -> str | None:
        """The ledger id recorded in an existing file, read without changing it."""
        try:
            db = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc}") from exc
        try:
            row = db.execute("SELECT ledger_id FROM ledger_identity LIMIT 1").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise LedgerError(f"cannot open the ledger {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {exc}") from exc
        finally:
            db.close()
        return None if row is None else str(row[0])

    def _connect(self) -> None:
        try:
            self._engine = make_engine(self.path)
            migrate(self._engine)
            # The one SQLite connection (StaticPool), kept at hand for the hot path.
            self._db = self._engine.raw_connection().driver_connection
            st = os.stat(self.path)
        except (SQLAlchemyError, OSError) as exc:
            raise LedgerError(f"cannot open the ledger {self.path}: {_describe(exc)}") from exc
        self._file_id = (st.st_dev, st.st_ino)
        self.blocked = None

    def _insert_identity(
        self, conn: Connection, ledger_id: str, base: int, previous: str | None, how: str
    ) -> None:
        conn.execute(
            insert(t.ledger_identity).values(
                ledger_id=ledger_id,
                terminal_id=self.terminal_id,
                created_ms=self.now_ms(),
                number_base=base,
                previous_ledger_id=previous,
                how=how,
            )
        )

    def _write_marker(self, marker: Marker) -> None:
        try:
            write_marker(self.marker_path, marker)
        except MarkerError as exc:
            raise LedgerError(str(exc)) from exc
        self._marker = marker

    def _reserve(self, payment: int = 0, event: int = 0) -> None:
        """Make the marker cover this number before the transaction that uses it commits."""
        m = self._marker
        if m is None:
            raise LedgerError("the ledger is not open")
        if payment > m.payment_reserved or event > m.event_reserved:
            self._write_marker(m.reserving(payment, event, self.now_ms()))

    def check_file(self) -> None:
        """LedgerIdentityError when the ledger file was deleted or replaced under the
        running core: writes would go to an unlinked file and be lost at the next start.
        One stat(); called before every write and periodically by the engine (M10)."""
        if self.blocked is not None:
            raise LedgerIdentityError(self.blocked)
        expected = self._file_id
        if expected is None:
            return
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise LedgerError(f"cannot check the ledger file {self.path}: {exc.strerror}") from exc
        if current != expected:
            what = "deleted" if current is None else "replaced by another file"
            self.blocked = (
                f"the ledger file {self.path} was {what} while the core was running; "
                "nothing more is recorded: restart the core (a technician then decides "
                "with `kiosk ledger init --new`, docs/ledger.md)"
            )
            raise LedgerIdentityError(self.blocked)

    def initialise_new(self, by: str, reason: str = "") -> dict[str, Any]:
        """A technician's explicit decision: start a new ledger for this terminal.

        Whatever is at the ledger path is moved aside (never deleted); the new ledger's
        payment numbers and event ids continue above the marker's reservation, so no id
        the desk has seen can come again. Recorded as a `ledger_initialised` event (desk).
        """
        with self._lock:
            try:
                previous = read_marker(self.marker_path)
            except MarkerError:
                previous = None  # damaged: the new numbering still starts above the ledger's
            self.close()
            stamp = str(self.now_ms())
            moved: list[str] = []
            try:
                for suffix in ("", *SIDE_FILE_SUFFIXES):
                    src = self.path.with_name(self.path.name + suffix)
                    if src.exists():
                        dst = self.path.with_name(f"{self.path.name}.replaced-{stamp}{suffix}")
                        os.replace(src, dst)
                        moved.append(dst.name)
            except OSError as exc:
                raise LedgerError(f"cannot move the old ledger aside: {exc.strerror}") from exc
            payment_base = previous.payment_reserved if previous else 0
            event_base = previous.event_reserved if previous else 0
            ledger_id = new_ledger_id()
            now = self.now_ms()
            # The marker first: a crash before the ledger commits leaves "ledger missing",
            # and the technician simply runs the command again.
            self._write_marker(
                Marker(self.terminal_id, ledger_id, payment_base, event_base, now).reserving(
                    payment_base + 1, event_base + 1, now
                )
            )
            self._connect()
            self.ledger_id = ledger_id
            previous_id = previous.ledger_id if previous else None
            data = {
                "ledger_id": ledger_id,
                "previous_ledger_id": previous_id,
                "payment_numbers_from": payment_base + 1,
                "moved_aside": moved,
                "by": by,
                "reason": reason,
            }
            with self._tx() as conn:
                self._insert_identity(
                    conn, ledger_id, payment_base, previous_id, "technician init"
                )
                conn.execute(insert(t.counters).values(name=PAYMENT_COUNTER, value=payment_base))
                event_id = self._event(
                    conn, "ledger_initialised", "warning", data, now, event_id=event_base + 1
                )
            return {**data, "event_id": event_id}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._db = None
        self._file_id = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise LedgerError(self.blocked or "the ledger is not open")
        return self._engine

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._lock:
            self.check_file()
            try:
                with self.engine.begin() as conn:
                    yield conn
            except LedgerError:
                raise
            except (DBAPIError, SQLAlchemyError, sqlite3.Error, OSError) as exc:
                raise LedgerError(f"ledger write failed: {_describe(exc)}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._lock:
            try:
                with self.engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as conn:
                    yield conn
            except (DBAPIError, SQLAlchemyError, OSError) as exc:
                raise LedgerError(f"ledger read failed: {_describe(exc)}") from exc

    @contextmanager
    def _raw_tx(self) -> Iterator[sqlite3.Cursor]:
        """A transaction on the bare sqlite3 connection (the same one SQLAlchemy uses), for
        the per-bill hot path only: SQLAlchemy's transaction wrapper alone adds about 60%
        to its CPU (docs/ledger.md, "Using the ledger from other modules"). Never handed
        out: other modules use transaction()."""
        with self._lock:
            self.check_file()
            db = self._db
            if db is None:
                raise LedgerError(self.blocked or "the ledger is not open")
            try:
                cur = db.cursor()
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                cur.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise LedgerError(f"ledger write failed: {exc}") from exc
                raise

    # -- the doors for sibling modules (outbox, desk sync, tests) ----------------------
    @contextmanager
    def transaction(self) -> Iterator[LedgerTx]:
        """One durable write transaction (BEGIN IMMEDIATE ... COMMIT, synchronous=FULL):
        all or nothing. Checks first that the ledger file is still this terminal's
        (check_file, M10). Any database or disk failure raises LedgerError (M10); an
        exception from the block rolls everything back."""
        with self._tx() as conn:
            yield LedgerTx(self, conn, self.now_ms())

    @contextmanager
    def read(self) -> Iterator[LedgerRead]:
        """A consistent read (deferred BEGIN, so a full or read-only disk does not stop
        it). A failure raises LedgerError."""
        with self._read() as conn:
            yield LedgerRead(conn)

    def pragma(self, name: str, value: int | str | None = None) -> Any:
        """Read (value None) or set a connection PRAGMA of the ledger's one connection,
        between transactions; returns the first value the PRAGMA reports. Only the
        settings in TUNABLE_PRAGMAS: none of them can weaken durability (M2)."""
        if name not in TUNABLE_PRAGMAS:
            raise ValueError(f"PRAGMA {name!r} is not one the ledger lets callers change")
        if value is not None and not _PRAGMA_VALUE.fullmatch(str(value)):
            raise ValueError(f"not a PRAGMA value: {value!r}")
        sql = f"PRAGMA {name}" if value is None else f"PRAGMA {name}={value}"
        with self._lock:
            db = self._db
            if db is None:
                raise LedgerError(self.blocked or "the ledger is not open")
            try:  # outside any transaction: a PRAGMA is per connection
                row = db.execute(sql).fetchone()
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger PRAGMA {name} failed: {exc}") from exc
        return None if row is None else row[0]

    # -- sessions and escrow -----------------------------------------------------------
    def open_session(self, provider_id: str, account: str, currency: str) -> int:
        now = self.now_ms()
        with self._tx() as conn:
            result = conn.execute(
                insert(t.sessions).values(
                    provider_id=provider_id,
                    account=account,
                    state="collecting",
                    inserted_minor=0,
                    currency=currency,
                    started_ms=now,
                    updated_ms=now,
                )
            )
            return _new_id(result)

    def abandon_session(self, session_id: int) -> None:
        """Close a session that took no cash. One with cash must be finished, never dropped."""
        with self._tx() as conn:
            inserted = self._session_cash(conn, session_id)
            if inserted:
                raise LedgerError(f"session {session_id} holds cash and cannot be abandoned")
            conn.execute(
                update(t.sessions)
                .where(t.sessions.c.id == session_id)
                .values(state="abandoned", updated_ms=self.now_ms())
            )

    def record_escrow(
        self, session_id: int | None, amount_minor: int, currency: str, bill_type: int
    ) -> int:
        with self._tx() as conn:
            result = conn.execute(
                insert(t.escrows).values(
                    session_id=session_id,
                    amount_minor=amount_minor,
                    currency=currency,
                    bill_type=bill_type,
                    state="pending",
                    created_ms=self.now_ms(),
                    run_id=self.run_id,
                )
            )
            return _new_id(result)

    def resolve_escrow(self, escrow_id: int, state: str) -> None:
        with self._tx() as conn:
            conn.execute(
                update(t.escrows)
                .where(t.escrows.c.id == escrow_id, t.escrows.c.state == "pending")
                .values(state=state, resolved_ms=self.now_ms())
            )

    # -- the credit point --------------------------------------------------------------
    def record_stacked(
        self,
        event_key: str,
        amount_minor: int,
        currency: str,
        bill_type: int,
        origin: StackOrigin | bool,
        escrow_id: int | None,
    ) -> StackOutcome:
        """Commit one stacked bill (M1, M2), or recognise it as already committed.

        `escrow_id` is the engine's pending escrow for this bill in this run. Without one
        (a report after a restart or a power-up) only the latest escrow on record can own
        it, and `origin` (drivers.acceptor.StackOrigin) says what the report may be:
        - if that escrow is pending or expired (STACK sent, outcome unknown: M6) with the
          same value, the bill is its own, whatever the origin;
        - only an UNREQUESTED report may be the un-acknowledged repeat of a bill an earlier
          run committed (the core died between commit and ACK): if the latest escrow was
          stacked by an earlier run with the same value, it credits nothing;
        - a POWER_UP report is always a new stacking, never such a repeat (nor is a
          REQUESTED one: this run sent its STACK);
        - anything else is an unclaimed credit, never dropped.
        `amount_minor` UNKNOWN_AMOUNT is a bill the device did not name: an unclaimed
        credit of unknown value for a technician to resolve, with an `unknown_bill_stacked`
        event. A bool `origin` is the former `recovered` flag (True: UNREQUESTED).
        """
        if isinstance(origin, bool):
            origin = StackOrigin.UNREQUESTED if origin else StackOrigin.REQUESTED
        recovered = origin is not StackOrigin.REQUESTED
        now = self.now_ms()
        if escrow_id is not None and amount_minor != UNKNOWN_AMOUNT:
            with self._raw_tx() as cur:
                # No key check needed here: a repeated event finds its escrow no longer
                # pending and takes the general path, which recognises the key.
                fast = self._credit_collecting(
                    cur, event_key, amount_minor, currency, bill_type, recovered, escrow_id, now
                )
                if fast is not None:
                    return fast
        with self._tx() as conn:
            if conn.execute(
                select(t.stacked_bills.c.id).where(t.stacked_bills.c.event_key == event_key)
            ).first():
                return StackOutcome("duplicate")
            unknown = amount_minor == UNKNOWN_AMOUNT
            escrow, repeat = (None, False) if unknown else self._match_escrow(
                conn, escrow_id, amount_minor, currency, origin
            )
            if repeat:
                self._event(
                    conn,
                    "duplicate_stacked_ignored",
                    "warning",
                    {"event_key": event_key, "amount_minor": amount_minor, "currency": currency,
                     "origin": origin.value},
                    now,
                )
                return StackOutcome("duplicate")
            session = None
            if escrow is not None:
                conn.execute(
                    update(t.escrows)
                    .where(t.escrows.c.id == escrow.id)
                    .values(state="stacked", resolved_ms=now)
                )
                if escrow.session_id is not None:
                    session = conn.execute(
                        select(t.sessions).where(t.sessions.c.id == escrow.session_id)
                    ).first()
            collecting = session if session is not None and session.state == "collecting" else None
            bill_id = _new_id(conn.execute(
                insert(t.stacked_bills).values(
                    event_key=event_key,
                    escrow_id=escrow.id if escrow is not None else None,
                    session_id=collecting.id if collecting is not None else None,
                    amount_minor=amount_minor,
                    currency=currency,
                    bill_type=bill_type,
                    recovered=recovered,
                    stacked_ms=now,
                    run_id=self.run_id,
                )
            ))
            self._count_in_cassette(conn, amount_minor, currency)
            if collecting is not None:
                inserted = self._session_cash(conn, collecting.id)
                return StackOutcome("credited", collecting.id, inserted)
            if unknown:
                reason = UNKNOWN_BILL_REASON
                self._event(conn, "unknown_bill_stacked", "error",
                            {"event_key": event_key, "currency": currency,
                             "origin": origin.value}, now)
            elif session is not None:
                reason = "stacked after its session had ended"
            else:
                reason = "stacked with no escrow decision on record"
            record_id = self._unclaimed(conn, [int(bill_id)], amount_minor, currency, reason, now,
                                        origin=origin)
            return StackOutcome("unclaimed", unclaimed_id=record_id)

    def _credit_collecting(
        self,
        cur: sqlite3.Cursor,
        event_key: str,
        amount_minor: int,
        currency: str,
        bill_type: int,
        recovered: bool,
        escrow_id: int,
        now: int,
    ) -> StackOutcome | None:
        """The hot path, every bill of every payment: the escrow is pending and its session
        collects. Plain SQL on the transaction's own connection: SQLAlchemy's statement
        building cost about ten times the CPU of this path, more than the fsync
        (docs/ledger.md, "Using the ledger from other modules"). None: take the general
        path (this transaction wrote nothing)."""
        row = cur.execute(_SQL_ESCROW_SESSION, (escrow_id,)).fetchone()
        if row is None or row[0] != "pending" or row[2] != "collecting" or row[4] != currency:
            return None
        session_id, inserted = row[1], row[3] + amount_minor
        cur.execute(_SQL_ESCROW_STACKED, (now, escrow_id))
        cur.execute(
            _SQL_INSERT_BILL,
            (
                event_key,
                escrow_id,
                session_id,
                amount_minor,
                currency,
                bill_type,
                recovered,
                now,
                self.run_id,
            ),
        )
        cur.execute(_SQL_CASSETTE_ADD, (amount_minor, currency))
        return StackOutcome("credited", session_id, inserted)

    def _session_cash(self, conn: Connection, session_id: int) -> int:
        """Cash in a session: the sum of its stacked bills. Derived, never kept twice
        (sessions.inserted_minor is written once, when the session closes)."""
        b = t.stacked_bills
        return int(
            conn.execute(
                select(func.coalesce(func.sum(b.c.amount_minor), 0)).where(
                    b.c.session_id == session_id
                )
            ).scalar_one()
        )

    def _match_escrow(
        self,
        conn: Connection,
        escrow_id: int | None,
        amount_minor: int,
        currency: str,
        origin: StackOrigin,
    ) -> tuple[Any, bool]:
        """(escrow row or None, is_repeat). See record_stacked for the rules."""
        e, b = t.escrows, t.stacked_bills
        if escrow_id is not None:
            row = conn.execute(select(e).where(e.c.id == escrow_id)).first()
            if row is not None and row.state == "pending":
                return row, False
        # No escrow of this run: only the latest escrow of all can own this report.
        latest = conn.execute(select(e).order_by(e.c.id.desc()).limit(1)).first()
        if latest is None or latest.amount_minor != amount_minor or latest.currency != currency:
            return None, False
        if latest.state in ("pending", "expired"):
            return latest, False  # STACK was sent, the outcome never arrived: this is it
        if (
            origin is StackOrigin.UNREQUESTED
            and latest.state == "stacked"
            and latest.run_id != self.run_id
        ):
            bill = conn.execute(select(b.c.run_id).where(b.c.escrow_id == latest.id)).first()
            return None, bill is not None and bill.run_id != self.run_id
        return None, False

    def _count_in_cassette(self, conn: Connection, amount_minor: int, currency: str) -> None:
        c = t.cassette
        updated = conn.execute(
            update(c)
            .where(c.c.amount_minor == amount_minor, c.c.currency == currency)
            .values(count=c.c.count + 1)
        ).rowcount
        if not updated:
            conn.execute(insert(c).values(amount_minor=amount_minor, currency=currency, count=1))

    # -- payments ----------------------------------------------------------------------
    def _next_number(self, conn: Connection) -> int:
        c = t.counters
        value = conn.execute(
            update(c)
            .where(c.c.name == PAYMENT_COUNTER)
            .values(value=c.c.value + 1)
            .returning(c.c.value)
        ).scalar()
        if value is None:
            conn.execute(insert(c).values(name=PAYMENT_COUNTER, value=1))
            value = 1
        self._reserve(payment=int(value))  # durable before this number can be used (M5)
        return int(value)

    def _payment_id(self, number: int) -> str:
        return f"{self.terminal_id}-{number:0{NUMBER_WIDTH}d}"

    def _bills_summary(self, conn: Connection, where: Any) -> list[dict[str, int | str]]:
        b = t.stacked_bills
        rows: Any = conn.execute(  # rows of (int, str, int): Core columns type as object
            select(b.c.amount_minor, b.c.currency, func.count())
            .where(where)
            .group_by(b.c.amount_minor, b.c.currency)
            .order_by(b.c.amount_minor)
        ).all()
        return [{"amount_minor": a, "currency": cur, "count": n} for a, cur, n in rows]

    def _enqueue(
        self, conn: Connection, kind: str, ref: str, payload: dict[str, Any], now: int
    ) -> int:
        """Queue a message for the desk; returns its outbox id (its sequence number)."""
        result = conn.execute(
            insert(t.outbox).values(
                kind=kind,
                ref=ref,
                payload=json.dumps(payload, ensure_ascii=False, sort_keys=True),
                created_ms=now,
                attempts=0,
            )
        )
        return _new_id(result)

    def _history(
        self, conn: Connection, payment_id: str, status: str, detail: str | None, now: int
    ) -> None:
        conn.execute(
            insert(t.payment_history).values(
                payment_id=payment_id, status=status, detail=detail, at_ms=now
            )
        )

    def _payment_payload(self, conn: Connection, payment_id: str) -> dict[str, Any]:
        p = conn.execute(select(t.payments).where(t.payments.c.id == payment_id)).one()
        payload = dict(p._mapping)
        payload["terminal_id"] = self.terminal_id
        payload["ledger_id"] = self.ledger_id  # which ledger issued it (docs/ledger.md)
        payload["bills"] = self._bills_summary(conn, t.stacked_bills.c.payment_id == payment_id)
        for key in ("receipt_printed_ms", "updated_ms", "status_detail"):
            payload.pop(key, None)
        return payload

    def finish_session(
        self,
        session_id: int,
        commission: Callable[[int], int],
        note: str | None = None,
    ) -> str | None:
        """Turn a collecting session into a payment (M5, M9); None if it took no cash."""
        now = self.now_ms()
        with self._tx() as conn:
            s = conn.execute(select(t.sessions).where(t.sessions.c.id == session_id)).one()
            if s.state != "collecting":
                return s.payment_id
            cash = self._session_cash(conn, session_id)
            if cash == 0:
                conn.execute(
                    update(t.sessions)
                    .where(t.sessions.c.id == session_id)
                    .values(state="abandoned", updated_ms=now)
                )
                return None
            payment_id = self._insert_payment(
                conn, PaymentKind.PAYMENT, cash, s.currency, note, now, commission=commission,
                provider_id=s.provider_id, account=s.account, session_id=session_id,
            ).id
            conn.execute(
                update(t.stacked_bills)
                .where(t.stacked_bills.c.session_id == session_id)
                .values(payment_id=payment_id)
            )
            conn.execute(
                update(t.sessions)
                .where(t.sessions.c.id == session_id)
                .values(
                    state="finished", payment_id=payment_id, inserted_minor=cash, updated_ms=now
                )
            )
            self._enqueue(conn, "payment", payment_id, self._payment_payload(conn, payment_id), now)
            return payment_id

    def _insert_payment(
        self,
        conn: Connection,
        kind: str,
        inserted_minor: int,
        currency: str,
        note: str | None,
        now: int,
        *,
        commission: Callable[[int], int] | None = None,
        provider_id: str | None = None,
        account: str | None = None,
        session_id: int | None = None,
        detail: str | None = None,
    ) -> NewPayment:
        """The one place a payments row is created: see LedgerTx.create_payment."""
        if kind == PaymentKind.PAYMENT:
            fee = min(max(commission(inserted_minor), 0), inserted_minor) if commission else 0
            status, credited = PaymentStatus.QUEUED, inserted_minor - fee
            history = [(PaymentStatus.CONFIRMED, detail or note), (PaymentStatus.QUEUED, None)]
        elif kind == PaymentKind.UNCLAIMED:
            fee, status, credited = 0, PaymentStatus.UNCLAIMED, 0
            history = [(PaymentStatus.UNCLAIMED, detail or note)]
        else:
            raise ValueError(f"unknown payment kind {kind!r}")
        number = self._next_number(conn)
        payment_id = self._payment_id(number)
        conn.execute(
            insert(t.payments).values(
                id=payment_id,
                number=number,
                kind=kind,
                session_id=session_id,
                provider_id=provider_id,
                account=account,
                inserted_minor=inserted_minor,
                commission_minor=fee,
                credited_minor=credited,
                currency=currency,
                status=status,
                note=note,
                created_ms=now,
                updated_ms=now,
                reprocess_count=0,
                check_code=new_check_code(),  # "check my payment" asks for it with the id
            )
        )
        for step, text in history:
            self._history(conn, payment_id, step, text, now)
        return NewPayment(payment_id, number, inserted_minor, fee, credited)

    def _unclaimed(
        self,
        conn: Connection,
        bill_ids: list[int],
        amount_minor: int,
        currency: str,
        reason: str,
        now: int,
        origin: StackOrigin | None = None,
    ) -> str:
        """An unclaimed-credit record for `bill_ids` (M6), reported to the desk; `origin`,
        when known, goes into the `unclaimed_credit` event for the audit."""
        record_id = self._insert_payment(
            conn, PaymentKind.UNCLAIMED, amount_minor, currency, reason, now
        ).id
        conn.execute(
            update(t.stacked_bills)
            .where(t.stacked_bills.c.id.in_(bill_ids))
            .values(payment_id=record_id)
        )
        self._enqueue(conn, "payment", record_id, self._payment_payload(conn, record_id), now)
        data: dict[str, Any] = {
            "record_id": record_id,
            "amount_minor": amount_minor,
            "currency": currency,
            "reason": reason,
        }
        if origin is not None:
            data["origin"] = origin.value
        self._event(conn, "unclaimed_credit", "warning", data, now)
        return record_id

    def mark_receipt_printed(self, payment_id: str) -> None:
        with self._tx() as conn:
            conn.execute(
                update(t.payments)
                .where(t.payments.c.id == payment_id)
                .values(receipt_printed_ms=self.now_ms())
            )

    def get_payment(self, payment_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(select(t.payments).where(t.payments.c.id == payment_id)).first()
            if row is None:
                return None
            out = dict(row._mapping)
            out["bills"] = self._bills_summary(conn, t.stacked_bills.c.payment_id == payment_id)
            out["history"] = [
                dict(h._mapping)
                for h in conn.execute(
                    select(
                        t.payment_history.c.status,
                        t.payment_history.c.detail,
                        t.payment_history.c.at_ms,
                    )
                    .where(t.payment_history.c.payment_id == payment_id)
                    .order_by(t.payment_history.c.id)
                )
            ]
            return out

    def list_payments(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                select(t.payments).order_by(t.payments.c.number.desc()).limit(limit).offset(offset)
            )
            return [dict(r._mapping) for r in rows]

    # -- crash recovery (M6) -----------------------------------------------------------
    def reconcile(
        self,
        commission_for: Callable[[str], Callable[[int], int]],
        payable: Callable[[str, int], bool] = lambda _provider_id, _cash: True,
    ) -> ReconcileReport:
        """Close what a crash left open. Call once per start, before any new session.

        A session the crash left collecting becomes its payment (M6), unless
        `payable(provider_id, cash)` says no payment may be made of that cash (under the
        provider's minimum, or all of it taken by the fee): then it is an unclaimed credit
        (`unclaim_session`), as when such a customer walks away (M9)."""
        now = self.now_ms()
        with self._tx() as conn:
            e = t.escrows
            lost = conn.execute(
                select(e.c.id, e.c.amount_minor, e.c.currency, e.c.session_id, e.c.created_ms)
                .where(e.c.state == "pending")
                .order_by(e.c.id)
            ).all()
            expired = conn.execute(
                update(e).where(e.c.state == "pending").values(state="expired", resolved_ms=now)
            ).rowcount
            if lost:
                # STACK was sent and the answer died with the power: the note may be in the
                # cassette or back with the customer. Nothing explains a cassette/ledger
                # difference at encashment unless it is said now (the desk sees it too).
                self._event(
                    conn,
                    "escrow_outcome_unknown",
                    "warning",
                    {
                        "escrows": [
                            {
                                "escrow_id": r.id,
                                "amount_minor": r.amount_minor,
                                "currency": r.currency,
                                "session_id": r.session_id,
                                "created_ms": r.created_ms,
                            }
                            for r in lost
                        ],
                        "total_minor": sum(r.amount_minor for r in lost),
                    },
                    now,
                )
            b = t.stacked_bills
            cash_of = (
                select(func.coalesce(func.sum(b.c.amount_minor), 0))
                .where(b.c.session_id == t.sessions.c.id)
                .scalar_subquery()
            )
            open_sessions: Any = conn.execute(
                select(t.sessions.c.id, t.sessions.c.provider_id, cash_of).where(
                    t.sessions.c.state == "collecting"
                )
            ).all()
            strays: Any = conn.execute(
                select(b.c.id, b.c.amount_minor, b.c.currency).where(
                    b.c.payment_id.is_(None), b.c.session_id.is_(None)
                )
            ).all()
            unclaimed = tuple(
                self._unclaimed(conn, [bid], amount, cur, "found unassigned after restart", now)
                for bid, amount, cur in strays
            )
        recovered: list[str] = []
        abandoned = 0
        for session_id, provider_id, cash in open_sessions:
            if cash > 0 and not payable(provider_id, int(cash)):
                found = self.unclaim_session(session_id, UNCLAIMED_UNPAYABLE)
                if found is not None:
                    unclaimed += (found[0],)
                    continue
            pid = self.finish_session(
                session_id, commission_for(provider_id), note="finished after a terminal restart"
            )
            if pid is None:
                abandoned += 1
            else:
                recovered.append(pid)
                self.add_event(
                    "session_recovered", "warning", {"payment_id": pid, "session_id": session_id}
                )
        return ReconcileReport(tuple(recovered), abandoned, expired, unclaimed)

    def unclaim_session(self, session_id: int, reason: str) -> tuple[str, int] | None:
        """A collecting session with cash → one unclaimed record holding all of its bills,
        in one transaction; (record id, cash), or None if the session was already closed
        or took no cash. For cash no payment may be made of (under the provider's minimum,
        or all of it taken by the fee) when the customer never pressed "pay": the money is
        kept for a desk to resolve, never swallowed by a zero-credit payment (M9). The
        session is closed as finished with the record as its payment, so no restart
        reconciles it into a payment again (M6); the record goes to the desk through the
        outbox (M8), and an `unclaimed_credit` event says why."""
        with self.transaction() as tx:
            return _unclaim_session(tx, session_id, reason)

    # -- cassette and encashment (M7) --------------------------------------------------
    def cassette_counts(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(
                select(t.cassette)
                .where(t.cassette.c.count > 0)
                .order_by(t.cassette.c.currency, t.cassette.c.amount_minor)
            )
            return [dict(r._mapping) for r in rows]

    def encash(self, technician: str) -> dict[str, Any]:
        """Empty the cassette: report what was in it, reset counters, in one transaction."""
        now = self.now_ms()
        with self._tx() as conn:
            counts = [
                dict(r._mapping)
                for r in conn.execute(
                    select(t.cassette)
                    .where(t.cassette.c.count > 0)
                    .order_by(t.cassette.c.currency, t.cassette.c.amount_minor)
                )
            ]
            currencies = {c["currency"] for c in counts} or {"RUB"}
            currency = sorted(currencies)[0]
            total = sum(c["amount_minor"] * c["count"] for c in counts)
            bill_count = sum(c["count"] for c in counts)
            period_start = conn.execute(select(func.max(t.encashments.c.at_ms))).scalar()
            e = t.escrows
            # Escrows of this period that stayed of unknown outcome (one claimed later by
            # a stacked report is `stacked`, its bill counted). Each is reported once.
            this_period = e.c.created_ms > (period_start if period_start is not None else -1)
            unexplained = (e.c.state == "expired", e.c.encashment_id.is_(None), this_period)
            unknown = [
                {
                    "escrow_id": r.id,
                    "amount_minor": r.amount_minor,
                    "currency": r.currency,
                    "created_ms": r.created_ms,
                }
                for r in conn.execute(
                    select(e.c.id, e.c.amount_minor, e.c.currency, e.c.created_ms)
                    .where(*unexplained)
                    .order_by(e.c.id)
                )
            ]
            report = {
                "counts": counts,
                "period_start_ms": period_start,
                "unknown_outcomes": unknown,
            }
            enc_id = _new_id(conn.execute(
                insert(t.encashments).values(
                    at_ms=now,
                    technician=technician,
                    bill_count=bill_count,
                    total_minor=total,
                    currency=currency,
                    report=json.dumps(report),
                )
            ))
            conn.execute(
                update(t.stacked_bills)
                .where(t.stacked_bills.c.encashment_id.is_(None))
                .values(encashment_id=enc_id)
            )
            # Explained once: an expired escrow belongs to the first report after it.
            conn.execute(update(e).where(*unexplained).values(encashment_id=enc_id))
            conn.execute(update(t.cassette).values(count=0))
            self._event(
                conn,
                "encashment",
                "info",
                {
                    "encashment_id": enc_id,
                    "bill_count": bill_count,
                    "total_minor": total,
                    "technician": technician,
                    "unknown_outcomes": len(unknown),
                    "unknown_outcomes_minor": sum(u["amount_minor"] for u in unknown),
                },
                now,
            )
            return {
                "id": int(enc_id),
                "at_ms": now,
                "technician": technician,
                "bill_count": bill_count,
                "total_minor": total,
                "currency": currency,
                "counts": counts,
                "period_start_ms": period_start,
                "unknown_outcomes": unknown,
            }

    # -- events and health -------------------------------------------------------------
    def _event(
        self,
        conn: Connection,
        kind: str,
        severity: str,
        data: dict[str, Any],
        now: int,
        event_id: int | None = None,
    ) -> int:
        """Record an event and queue it for the desk. `event_id` only for a new ledger's
        first event: later ids follow it, above every id the old ledger used."""
        values: dict[str, Any] = {
            "kind": kind,
            "severity": severity,
            "data": json.dumps(data, ensure_ascii=False, sort_keys=True),
            "at_ms": now,
        }
        if event_id is not None:
            values["id"] = event_id
        event_id = _new_id(conn.execute(insert(t.events).values(**values)))
        self._reserve(event=event_id)  # the desk knows events by id: never repeat one
        self._enqueue(
            conn,
            "event",
            f"{self.terminal_id}-E{event_id}",
            {
                "event_id": event_id,
                "terminal_id": self.terminal_id,
                "kind": kind,
                "severity": severity,
                "data": data,
                "at_ms": now,
            },
            now,
        )
        return event_id

    def add_event(self, kind: str, severity: str, data: dict[str, Any]) -> int:
        with self._tx() as conn:
            return self._event(conn, kind, severity, data, self.now_ms())

    def recent_events(
        self,
        limit: int = 50,
        *,
        kinds: Collection[str] = (),
        prefixes: Collection[str] = (),
        exclude: bool = False,
        severities: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """The newest events first. `kinds`/`prefixes` keep the events of those kinds
        (or, with `exclude`, all others); `severities` keeps only those severities."""
        k = t.events.c.kind
        query = select(t.events)
        if kinds or prefixes:
            match = or_(k.in_(list(kinds)), *(k.startswith(p, autoescape=True) for p in prefixes))
            query = query.where(not_(match) if exclude else match)
        if severities:
            query = query.where(t.events.c.severity.in_(list(severities)))
        with self._read() as conn:
            rows = conn.execute(query.order_by(t.events.c.id.desc()).limit(limit))
            return [{**dict(r._mapping), "data": json.loads(r.data)} for r in rows]

    def queue_stats(self) -> dict[str, Any]:
        o = t.outbox
        with self._read() as conn:
            counted: Any = conn.execute(
                select(func.count(), func.min(o.c.created_ms)).where(
                    o.c.acked_ms.is_(None), o.c.kind == "payment"
                )
            ).one()
            depth, oldest = counted
            return {"payments_unsent": int(depth), "oldest_unsent_ms": oldest}
