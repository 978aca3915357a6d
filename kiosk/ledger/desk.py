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

Every write is one durable transaction (Ledger._tx), like kiosk/ledger/outbox.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from kiosk.ledger import schema as t
from kiosk.ledger.db import in_list
from kiosk.ledger.outbox import OutboxMessage
from kiosk.ledger.store import Ledger, PaymentStatus

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


class DeskRefused(Exception):
    """A desk command that is authentic but cannot be done; `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CommandRecord:
    command_id: str
    kind: str
    received_ms: int
    result: dict[str, Any]


# -- outbox by sequence number ---------------------------------------------------------
def messages_by_seq(ledger: Ledger, seqs: Iterable[int]) -> list[OutboxMessage]:
    """Unacknowledged outbox messages with these sequence numbers, in order."""
    o = t.outbox
    seqs = list(seqs)
    if not seqs:
        return []
    with ledger._read() as conn:
        rows = conn.execute(
            select(o).where(in_list(o.c.id, seqs), o.c.acked_ms.is_(None)).order_by(o.c.id)
        ).all()
    return [OutboxMessage(r.id, r.kind, r.ref, json.loads(r.payload), r.attempts) for r in rows]


def acknowledge_seqs(ledger: Ledger, seqs: Iterable[int]) -> int:
    """The desk committed these messages: they leave the outbox (M8). Idempotent.

    A payment among them moves queued/sent → accepted (a re-processed one stays
    `reprocessed` until the desk reports its outcome). Returns how many rows left now.
    """
    o = t.outbox
    seqs = sorted({int(s) for s in seqs})
    if not seqs:
        return 0
    now = ledger.now_ms()
    with ledger._tx() as conn:
        refs = [
            r
            for (r,) in conn.execute(
                select(o.c.ref).where(
                    in_list(o.c.id, seqs), o.c.acked_ms.is_(None), o.c.kind == "payment"
                )
            )
        ]
        count = conn.execute(
            update(o).where(in_list(o.c.id, seqs), o.c.acked_ms.is_(None)).values(acked_ms=now)
        ).rowcount
        if refs:
            accepted = [
                pid
                for (pid,) in conn.execute(
                    select(t.payments.c.id).where(
                        in_list(t.payments.c.id, refs),
                        t.payments.c.status.in_([PaymentStatus.QUEUED, PaymentStatus.SENT]),
                    )
                )
            ]
            if accepted:
                conn.execute(
                    update(t.payments)
                    .where(in_list(t.payments.c.id, accepted))
                    .values(status=PaymentStatus.ACCEPTED, updated_ms=now)
                )
                conn.execute(  # one executemany: a drain acknowledges hundreds at once
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
    with ledger._read() as conn:
        rows = conn.execute(
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
    with ledger._read() as conn:
        r = conn.execute(select(d).where(d.c.command_id == command_id)).first()
    if r is None:
        return None
    return CommandRecord(r.command_id, r.kind, r.received_ms, json.loads(r.result))


def last_command_seq(ledger: Ledger, key_id: str) -> int:
    c = t.counters
    with ledger._read() as conn:
        value = conn.execute(select(c.c.value).where(c.c.name == DESK_SEQ_PREFIX + key_id)).scalar()
    return int(value or 0)


def execute_command(
    ledger: Ledger,
    command_id: str,
    kind: str,
    key_id: str,
    seq: int,
    action: Callable[[Connection, int], dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Record a desk command and its ledger effect in one transaction (at most once).

    `action(conn, now_ms)` does the command's ledger part and returns its result; it may
    raise DeskRefused, which is recorded as the (failed) result instead. Returns
    (False, stored result) if the command id was recorded before: nothing is done again.
    The key's sequence high-water mark moves to `seq` in the same transaction.
    """
    d, c = t.desk_commands, t.counters
    now = ledger.now_ms()
    with ledger._tx() as conn:
        old = conn.execute(select(d.c.result).where(d.c.command_id == command_id)).first()
        if old is not None:
            return False, json.loads(old.result)
        result: dict[str, Any]
        try:
            if action is None:
                result = {"ok": True}
            else:
                with conn.begin_nested():  # a refused action leaves no half-change behind
                    result = {"ok": True, **action(conn, now)}
        except DeskRefused as exc:
            result = {"ok": False, "error": exc.code, "message": str(exc)}
        stored = {**(extra or {}), **result, "key_id": key_id, "seq": seq}
        conn.execute(
            insert(d).values(
                command_id=command_id,
                kind=kind,
                received_ms=now,
                result=json.dumps(stored, ensure_ascii=False, sort_keys=True),
            )
        )
        name = DESK_SEQ_PREFIX + key_id
        current = conn.execute(select(c.c.value).where(c.c.name == name)).scalar()
        if current is None:
            conn.execute(insert(c).values(name=name, value=seq))
        elif seq > current:
            conn.execute(update(c).where(c.c.name == name).values(value=seq))
        return True, stored


def reprocess_action(
    ledger: Ledger, payment_id: str, account: str, command_id: str, reason: str
) -> Callable[[Connection, int], dict[str, Any]]:
    """The ledger part of "re-process to a corrected account": same payment id,
    reprocess_count + 1, status reprocessed, a history row keeping the old account, and
    a new outbox message (a new sequence number) for the desk."""

    def action(conn: Connection, now: int) -> dict[str, Any]:
        p = t.payments
        row = conn.execute(select(p).where(p.c.id == payment_id)).first()
        if row is None:
            raise DeskRefused("unknown_payment", f"no payment {payment_id} on this terminal")
        if row.kind != "payment":
            raise DeskRefused("not_allowed", f"{payment_id} is an {row.kind} record")
        if row.status not in REPROCESS_FROM:
            raise DeskRefused(
                "not_allowed", f"{payment_id} is {row.status}; the desk does not have it yet"
            )
        count = int(row.reprocess_count) + 1
        conn.execute(
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
        ledger._history(conn, payment_id, PaymentStatus.REPROCESSED, detail, now)
        ledger._enqueue(conn, "payment", payment_id, ledger._payment_payload(conn, payment_id), now)
        seq = conn.execute(select(func.max(t.outbox.c.id))).scalar()
        return {"payment_id": payment_id, "reprocess_count": count, "outbox_seq": int(seq)}

    return action


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
    with ledger._read() as conn:
        cfg = conn.execute(select(cv).order_by(cv.c.version.desc()).limit(1)).first()
        if cfg is not None:
            body = json.loads(cfg.body)
            out["config_version"] = int(cfg.version)
            out["config"] = body
            if isinstance(body.get("support_phone"), str):
                out["support_phone"] = body["support_phone"]
                phone_at = cfg.applied_ms
        rows = conn.execute(
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
    with ledger._read() as conn:
        r = conn.execute(
            select(cv.c.version, cv.c.sha256).order_by(cv.c.version.desc()).limit(1)
        ).first()
    return None if r is None else (int(r.version), r.sha256)


def record_config(ledger: Ledger, version: int, sha256: str, body: dict[str, Any]) -> bool:
    """Keep an applied config document. False if this version or body is already kept."""
    cv = t.config_versions
    with ledger._tx() as conn:
        dup = conn.execute(
            select(cv.c.version).where((cv.c.version == version) | (cv.c.sha256 == sha256))
        ).first()
        if dup is not None:
            return False
        conn.execute(
            insert(cv).values(
                version=version,
                applied_ms=ledger.now_ms(),
                sha256=sha256,
                body=json.dumps(body, ensure_ascii=False, sort_keys=True),
            )
        )
        return True


# -- payment status from the desk ------------------------------------------------------
def apply_payment_status(
    ledger: Ledger, payment_id: str, status: str, detail: str | None, reprocess_count: int
) -> str:
    """processed/failed from the desk. Returns applied | unchanged | stale |
    unknown_payment | not_allowed. Only `applied` changed the ledger."""
    if status not in FINAL_STATUSES:
        return "not_allowed"
    p = t.payments
    now = ledger.now_ms()
    with ledger._tx() as conn:
        row = conn.execute(select(p).where(p.c.id == payment_id)).first()
        if row is None:
            return "unknown_payment"
        if row.kind != "payment" or row.status not in STATUS_FROM:
            return "not_allowed"
        if reprocess_count < row.reprocess_count:
            return "stale"  # about an attempt before the latest re-processing
        if reprocess_count > row.reprocess_count:
            return "not_allowed"
        if row.status == status and (row.status_detail or None) == (detail or None):
            return "unchanged"
        conn.execute(
            update(p)
            .where(p.c.id == payment_id)
            .values(status=status, status_detail=detail or None, updated_ms=now)
        )
        ledger._history(conn, payment_id, status, detail or None, now)
        return "applied"
