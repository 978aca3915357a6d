"""What the desk told the terminal, in the ledger (sync layer, issue 5).

- Outbox by sequence number: every outbox row's id is the terminal's per-terminal
  sequence number on the wire; the desk acknowledges sequence numbers (M8: a row leaves
  the outbox only then; `mark_sent` in outbox.py only counts attempts).
- Desk commands are executed at most once: `execute_command` records the command id, the
  desk key's sequence high-water mark and the result in the same transaction as the
  command's own ledger effect (a re-processed payment); a replay finds the record.
- Signed, versioned config documents are kept in config_versions; the newest applies.
- payment_status from the desk moves a payment to processed/failed through documented
  transitions only, with a payment_history row for each change.

Every write is one durable transaction (Ledger.transaction), reads go through Ledger.read,
like kiosk/ledger/outbox.py (docs/ledger.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update

from kiosk.coded_error import CodedError
from kiosk.ledger import schema as t
from kiosk.ledger.db import in_list
from kiosk.ledger.store import Ledger, LedgerRead, LedgerTx, PaymentKind, PaymentStatus

DESK_SEQ_PREFIX = "desk_seq:"
FINAL_STATUSES = (PaymentStatus.PROCESSED, PaymentStatus.FAILED)
# A desk status (processed/failed) may follow any of these; see docs/mqtt.md.
STATUS_FROM = (
    PaymentStatus.QUEUED,
    PaymentStatus.SENT,
    PaymentStatus.ACCEPTED,
    PaymentStatus.REPROCESSED,
    PaymentStatus.PROCESSED,
    PaymentStatus.FAILED,
)
# A payment may be re-processed once the desk has it (or has finished with it).
REPROCESS_FROM = (
    PaymentStatus.SENT,
    PaymentStatus.ACCEPTED,
    PaymentStatus.PROCESSED,
    PaymentStatus.FAILED,
    PaymentStatus.REPROCESSED,
)


class DeskRefused(CodedError):
    """A desk command that is authentic but cannot be done; `code` is stable."""


DeskAction = Callable[[LedgerTx], dict[str, Any]]
"""A desk command's ledger part: runs inside execute_command's transaction."""


@dataclass(frozen=True)
class CommandRecord:
    command_id: str
    kind: str
    received_ms: int
    result: dict[str, Any]


# -- memory ------------------------------------------------------------------------------
# SQLite's page cache per connection; its default (2,000 KiB) fills up as the drain
# walks the outbox of a large ledger and updates payments across it: +2.3 MiB resident
# for nothing the core needs (the OS caches the file anyway; docs/benchmarks.md,
# mqtt_drain). The ledger has one connection.
SYNC_PAGE_CACHE_KIB = 256


def limit_page_cache(ledger: Ledger, kib: int = SYNC_PAGE_CACHE_KIB) -> None:
    ledger.pragma("cache_size", -int(kib))  # negative: KiB


def page_cache_kib(ledger: Ledger) -> int:
    value = int(ledger.pragma("cache_size") or 0)
    return -value if value < 0 else value  # negative: KiB; positive: pages (1 KiB here)


# -- outbox by sequence number ---------------------------------------------------------
def acknowledge_seqs(ledger: Ledger, seqs: Iterable[int]) -> int:
    """The desk committed these messages: they leave the outbox (M8). Idempotent.

    A payment among them moves queued/sent → accepted (a re-processed one stays
    `reprocessed` until the desk reports its outcome). Returns how many rows left now.
    """
    o = t.outbox
    seqs = sorted({int(s) for s in seqs})
    if not seqs:
        return 0
    with ledger.transaction() as tx:
        now = tx.now_ms
        refs = [
            r
            for (r,) in tx.execute(
                select(o.c.ref).where(
                    in_list(o.c.id, seqs), o.c.acked_ms.is_(None), o.c.kind == "payment"
                )
            )
        ]
        count = tx.execute(
            update(o).where(in_list(o.c.id, seqs), o.c.acked_ms.is_(None)).values(acked_ms=now)
        ).rowcount
        if refs:
            accepted = [
                pid
                for (pid,) in tx.execute(
                    select(t.payments.c.id).where(
                        in_list(t.payments.c.id, refs),
                        t.payments.c.status.in_([PaymentStatus.QUEUED, PaymentStatus.SENT]),
                    )
                )
            ]
            if accepted:
                tx.execute(
                    update(t.payments)
                    .where(in_list(t.payments.c.id, accepted))
                    .values(status=PaymentStatus.ACCEPTED, updated_ms=now)
                )
                tx.execute(  # one executemany: a drain acknowledges hundreds at once
                    insert(t.payment_history),
                    [
                        {
                            "payment_id": pid,
                            "status": PaymentStatus.ACCEPTED,
                            "detail": None,
                            "at_ms": now,
                        }
                        for pid in accepted
                    ],
                )
        return int(count)


def outbox_depth(ledger: Ledger) -> dict[str, Any]:
    """Unacknowledged messages by kind, and the oldest unacknowledged payment."""
    o = t.outbox
    with ledger.read() as db:
        rows: Any = db.execute(
            select(o.c.kind, func.count(), func.min(o.c.created_ms))
            .where(o.c.acked_ms.is_(None))
            .group_by(o.c.kind)
        ).all()
    by_kind = {k: (int(n), oldest) for k, n, oldest in rows}
    payments = by_kind.get("payment", (0, None))
    return {
        "payments_unsent": payments[0],
        "oldest_unsent_ms": payments[1],
        "events_unsent": by_kind.get("event", (0, None))[0],
    }


# -- desk commands (at most once) ------------------------------------------------------
def command_record(ledger: Ledger, command_id: str) -> CommandRecord | None:
    d = t.desk_commands
    with ledger.read() as db:
        r = db.execute(select(d).where(d.c.command_id == command_id)).first()
    if r is None:
        return None
    return CommandRecord(r.command_id, r.kind, r.received_ms, json.loads(r.result))


def last_command_seq(ledger: Ledger, key_id: str) -> int:
    c = t.counters
    with ledger.read() as db:
        value = db.execute(select(c.c.value).where(c.c.name == DESK_SEQ_PREFIX + key_id)).scalar()
    return int(value or 0)


def execute_command(
    ledger: Ledger,
    command_id: str,
    kind: str,
    key_id: str,
    seq: int,
    action: DeskAction | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Record a desk command and its ledger effect in one transaction (at most once).

    `action(tx)` does the command's ledger part and returns its result; it may
    raise DeskRefused, which is recorded as the (failed) result instead. Returns
    (False, stored result) if the command id was recorded before: nothing is done again.
    The key's sequence high-water mark moves to `seq` in the same transaction.
    """
    d, c = t.desk_commands, t.counters
    with ledger.transaction() as tx:
        now = tx.now_ms
        old = tx.execute(select(d.c.result).where(d.c.command_id == command_id)).first()
        if old is not None:
            return False, json.loads(old.result)
        result: dict[str, Any]
        try:
            if action is None:
                result = {"ok": True}
            else:
                with tx.savepoint():  # a refused action leaves no half-change behind
                    result = {"ok": True, **action(tx)}
        except DeskRefused as exc:
            result = {"ok": False, "error": exc.code, "message": str(exc)}
        stored = {**(extra or {}), **result, "key_id": key_id, "seq": seq}
        tx.execute(
            insert(d).values(
                command_id=command_id,
                kind=kind,
                received_ms=now,
                result=json.dumps(stored, ensure_ascii=False, sort_keys=True),
            )
        )
        name = DESK_SEQ_PREFIX + key_id
        current = tx.execute(select(c.c.value).where(c.c.name == name)).scalar()
        if current is None:
            tx.execute(insert(c).values(name=name, value=seq))
        elif seq > current:
            tx.execute(update(c).where(c.c.name == name).values(value=seq))
        return True, stored


def _last_reprocess_to(db: LedgerRead, payment_id: str) -> str | None:
    """The account of the latest re-processing of a payment (its history row)."""
    h = t.payment_history
    detail = db.execute(
        select(h.c.detail)
        .where(h.c.payment_id == payment_id, h.c.status == PaymentStatus.REPROCESSED)
        .order_by(h.c.id.desc())
        .limit(1)
    ).scalar()
    try:
        return str(json.loads(detail)["to_account"]) if detail else None
    except (ValueError, KeyError, TypeError):
        return None


def reprocess_action(
    payment_id: str,
    account: str,
    command_id: str,
    reason: str,
    expected_count: int | None = None,
) -> DeskAction:
    """The ledger part of "re-process to a corrected account": same payment id,
    reprocess_count + 1, status reprocessed, a history row keeping the old account, and
    a new outbox message (a new sequence number) for the desk.

    Idempotent: `expected_count` is the reprocess_count the desk saw. If the payment is
    already one further and was re-processed to this very account, the earlier run is
    reported (`already: true`) and nothing runs again; any other count is refused
    (`stale_count`). Without `expected_count`, a payment whose latest re-processing went
    to this account is likewise not re-processed again."""

    def action(tx: LedgerTx) -> dict[str, Any]:
        now = tx.now_ms
        p = t.payments
        row = tx.execute(select(p).where(p.c.id == payment_id)).first()
        if row is None:
            raise DeskRefused("unknown_payment", f"no payment {payment_id} on this terminal")
        if row.kind != "payment":
            raise DeskRefused(
                "not_allowed",
                f"{payment_id} is an {row.kind} record (use reprocess_unclaimed)",
            )
        current = int(row.reprocess_count)
        done_before = (
            current >= 1
            and row.account == account
            and _last_reprocess_to(tx, payment_id) == account
        )
        if expected_count is not None and current != expected_count:
            if current == expected_count + 1 and done_before:
                return {"payment_id": payment_id, "reprocess_count": current, "already": True}
            raise DeskRefused(
                "stale_count",
                f"{payment_id} has reprocess_count {current}, the command expected "
                f"{expected_count}",
            )
        if expected_count is None and done_before:
            return {"payment_id": payment_id, "reprocess_count": current, "already": True}
        if row.status not in REPROCESS_FROM:
            raise DeskRefused(
                "not_allowed", f"{payment_id} is {row.status}; the desk does not have it yet"
            )
        count = current + 1
        tx.execute(
            update(p)
            .where(p.c.id == payment_id)
            .values(
                account=account,
                reprocess_count=count,
                status=PaymentStatus.REPROCESSED,
                status_detail=reason or None,
                updated_ms=now,
            )
        )
        detail = json.dumps(
            {
                "from_account": row.account,
                "to_account": account,
                "command_id": command_id,
                "reason": reason,
                "reprocess_count": count,
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        tx.add_history(payment_id, PaymentStatus.REPROCESSED, detail)
        seq = tx.enqueue("payment", payment_id, tx.payment_payload(payment_id))
        return {"payment_id": payment_id, "reprocess_count": count, "outbox_seq": seq}

    return action


def claim_unclaimed_action(
    record_id: str,
    provider_id: str,
    account: str,
    command_id: str,
    reason: str,
    commission: Callable[[int], int],
) -> DeskAction:
    """Re-process an unclaimed credit (money in the terminal without a payment) into a
    payment to `provider_id`/`account`, exactly once (M5, M6, M8, M9).

    The new payment gets a new id (a new number, M5), the record's amount, the
    provider's commission (no change is given: M9), status queued and an outbox message
    carrying `from_unclaimed` and the record's bills. The unclaimed record becomes
    `reprocessed` (reprocess_count + 1, status_detail = the new payment id, a history
    row naming it) and is sent again, so the desk sees both ends of the link. A second
    request for the same record to the same provider and account reports the first
    (`already: true`); to anything else it is refused (`already_claimed`)."""

    def action(tx: LedgerTx) -> dict[str, Any]:
        now = tx.now_ms
        p = t.payments
        rec = tx.execute(select(p).where(p.c.id == record_id)).first()
        if rec is None:
            raise DeskRefused("unknown_payment", f"no record {record_id} on this terminal")
        if rec.kind != "unclaimed":
            raise DeskRefused("not_allowed", f"{record_id} is a payment, not an unclaimed credit")
        if rec.status != PaymentStatus.UNCLAIMED:
            claimed = tx.execute(select(p).where(p.c.id == rec.status_detail)).first()
            if (
                claimed is not None
                and claimed.provider_id == provider_id
                and claimed.account == account
            ):
                return {"payment_id": claimed.id, "record_id": record_id, "already": True}
            raise DeskRefused(
                "already_claimed", f"{record_id} was already re-processed as {rec.status_detail}"
            )
        link = {"from_unclaimed": record_id, "command_id": command_id, "reason": reason}
        made = tx.create_payment(
            PaymentKind.PAYMENT,
            int(rec.inserted_minor),
            rec.currency,
            f"re-processed by the desk from unclaimed credit {record_id}",
            commission=commission,
            provider_id=provider_id,
            account=account,
            detail=json.dumps(link, ensure_ascii=False, sort_keys=True),
        )
        payment_id = made.id
        count = int(rec.reprocess_count) + 1
        tx.execute(
            update(p)
            .where(p.c.id == record_id)
            .values(
                status=PaymentStatus.REPROCESSED,
                status_detail=payment_id,
                reprocess_count=count,
                updated_ms=now,
            )
        )
        to = {"to_payment": payment_id, "provider_id": provider_id, "to_account": account,
              "command_id": command_id, "reason": reason, "reprocess_count": count}
        tx.add_history(
            record_id, PaymentStatus.REPROCESSED, json.dumps(to, ensure_ascii=False, sort_keys=True)
        )
        bills = tx.payment_payload(record_id)["bills"]
        payload = {**tx.payment_payload(payment_id), "bills": bills, "from_unclaimed": record_id}
        tx.enqueue("payment", payment_id, payload)
        record_payload = {**tx.payment_payload(record_id), "claimed_by": payment_id}
        tx.enqueue("payment", record_id, record_payload)
        return {"payment_id": payment_id, "record_id": record_id,
                "inserted_minor": made.inserted_minor, "commission_minor": made.commission_minor,
                "credited_minor": made.credited_minor, "provider_id": provider_id,
                "account": account}

    return action


def last_payment(ledger: Ledger) -> dict[str, Any] | None:
    """The newest payment (not an unclaimed record): for the desk's health view."""
    p = t.payments
    with ledger.read() as db:
        r = db.execute(
            select(p.c.id, p.c.status, p.c.created_ms, p.c.credited_minor, p.c.currency)
            .where(p.c.kind == "payment")
            .order_by(p.c.number.desc())
            .limit(1)
        ).first()
    return None if r is None else dict(r._mapping)


def desk_settings(ledger: Ledger) -> dict[str, Any]:
    """What the desk has set on this terminal, to apply again after a restart:
    the newest config document, and the latest support phone / disable decisions
    (a command or a config, whichever came last)."""
    d, cv = t.desk_commands, t.config_versions
    out: dict[str, Any] = {
        "config_version": 0,
        "config": None,
        "support_phone": None,
        "disabled": None,
    }
    phone_at = -1
    with ledger.read() as db:
        cfg = db.execute(select(cv).order_by(cv.c.version.desc()).limit(1)).first()
        if cfg is not None:
            body = json.loads(cfg.body)
            out["config_version"] = int(cfg.version)
            out["config"] = body
            if isinstance(body.get("support_phone"), str):
                out["support_phone"] = body["support_phone"]
                phone_at = cfg.applied_ms
        rows: Any = db.execute(
            select(d.c.kind, d.c.received_ms, d.c.result)
            .where(d.c.kind.in_(["set_support_phone", "disable", "enable"]))
            .order_by(d.c.received_ms, d.c.command_id)
        ).all()
    for kind, received_ms, result_text in rows:
        result = json.loads(result_text)
        if not result.get("ok"):
            continue
        if kind == "set_support_phone" and received_ms >= phone_at:
            out["support_phone"] = result.get("support_phone")
            phone_at = received_ms
        elif kind == "disable":
            out["disabled"] = result.get("reason") or "disabled by the desk"
        elif kind == "enable":
            out["disabled"] = None
    return out


# -- config documents ------------------------------------------------------------------
def current_config(ledger: Ledger) -> tuple[int, str] | None:
    """(version, sha256) of the newest applied config document, or None."""
    cv = t.config_versions
    with ledger.read() as db:
        r = db.execute(
            select(cv.c.version, cv.c.sha256).order_by(cv.c.version.desc()).limit(1)
        ).first()
    return None if r is None else (int(r.version), r.sha256)


def record_config(ledger: Ledger, version: int, sha256: str, body: dict[str, Any]) -> bool:
    """Keep an applied config document. False if this version or body is already kept."""
    cv = t.config_versions
    with ledger.transaction() as tx:
        dup = tx.execute(
            select(cv.c.version).where((cv.c.version == version) | (cv.c.sha256 == sha256))
        ).first()
        if dup is not None:
            return False
        tx.execute(
            insert(cv).values(
                version=version,
                applied_ms=ledger.now_ms(),
                sha256=sha256,
                body=json.dumps(body, ensure_ascii=False, sort_keys=True),
            )
        )
        return True


# -- payment status from the desk ------------------------------------------------------
STATUS_VERSION_PREFIX = "pst:"


def status_version_name(payment_id: str) -> str:
    """The counters row keeping a payment's newest applied desk status version (the
    name fits counters.name: a prefix and 28 hex of the id's sha256)."""
    return STATUS_VERSION_PREFIX + hashlib.sha256(payment_id.encode()).hexdigest()[:28]


def status_version(ledger: Ledger, payment_id: str) -> int:
    c = t.counters
    with ledger.read() as db:
        value = db.execute(
            select(c.c.value).where(c.c.name == status_version_name(payment_id))
        ).scalar()
    return int(value or 0)


def apply_payment_status(
    ledger: Ledger,
    payment_id: str,
    status: str,
    detail: str | None,
    reprocess_count: int,
    version: int,
) -> str:
    """processed/failed from the desk. Returns applied | unchanged | stale |
    stale_version | unknown_payment | not_allowed. Only `applied` changed the ledger.

    Statuses are ordered per payment by the desk's `version` (1, 2, 3 …): one at or
    below the newest applied is stale (an old signed "failed" replayed after
    "processed" changes nothing), so the order of arrival does not matter."""
    if status not in FINAL_STATUSES:
        return "not_allowed"
    p, c = t.payments, t.counters
    name = status_version_name(payment_id)
    with ledger.transaction() as tx:
        now = tx.now_ms
        row = tx.execute(select(p).where(p.c.id == payment_id)).first()
        if row is None:
            return "unknown_payment"
        if row.kind != "payment" or row.status not in STATUS_FROM:
            return "not_allowed"
        if reprocess_count < row.reprocess_count:
            return "stale"  # about an attempt before the latest re-processing
        if reprocess_count > row.reprocess_count:
            return "not_allowed"
        last = tx.execute(select(c.c.value).where(c.c.name == name)).scalar()
        if last is not None and version <= last:
            return "unchanged" if version == last else "stale_version"
        if last is None:
            tx.execute(insert(c).values(name=name, value=version))
        else:
            tx.execute(update(c).where(c.c.name == name).values(value=version))
        if row.status == status and (row.status_detail or None) == (detail or None):
            return "unchanged"
        tx.execute(
            update(p)
            .where(p.c.id == payment_id)
            .values(status=status, status_detail=detail or None, updated_ms=now)
        )
        tx.add_history(payment_id, status, detail or None)
        return "applied"
