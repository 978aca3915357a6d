"""Outbox reads and acknowledgements for the sync layer (M8).

A message stays in the outbox until the desk acknowledges it at application level; being
sent (or PUBACKed) only bumps the attempt counter. Resending is always safe: the desk
de-duplicates by payment id. Reads and writes go through the ledger's public doors
(Ledger.read / Ledger.transaction, docs/ledger.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from kiosk.ledger import schema as t
from kiosk.ledger.db import in_list
from kiosk.ledger.store import Ledger, PaymentStatus


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    kind: str
    ref: str
    payload: dict[str, Any]
    attempts: int


def pending(ledger: Ledger, limit: int = 100, after_id: int = 0) -> list[OutboxMessage]:
    """Unacknowledged messages after `after_id`, in order, payload parsed."""
    return [
        OutboxMessage(m.id, m.kind, m.ref, json.loads(m.payload), m.attempts)
        for m in pending_raw(ledger, limit, after_id)
    ]


@dataclass(frozen=True)
class RawMessage:
    """An outbox row as stored: the payload stays JSON text (the drain embeds it in a
    signed batch without parsing it, so a window of records costs its bytes only)."""

    id: int
    kind: str
    ref: str
    payload: str
    attempts: int
    created_ms: int


def _raw(rows: Iterable[Any]) -> list[RawMessage]:
    return [RawMessage(r.id, r.kind, r.ref, r.payload, r.attempts, r.created_ms) for r in rows]


def pending_raw(ledger: Ledger, limit: int = 100, after_id: int = 0) -> list[RawMessage]:
    """Unacknowledged rows after `after_id`, in order, payload as text."""
    o = t.outbox
    with ledger.read() as db:
        rows = db.execute(
            select(o.c.id, o.c.kind, o.c.ref, o.c.payload, o.c.attempts, o.c.created_ms)
            .where(o.c.acked_ms.is_(None), o.c.id > after_id)
            .order_by(o.c.id)
            .limit(limit)
        ).all()
    return _raw(rows)


def raw_by_seq(ledger: Ledger, seqs: Iterable[int]) -> list[RawMessage]:
    """Unacknowledged rows with these ids (sequence numbers), in order, payload as text;
    an acknowledged or unknown id is simply absent (the drain's resends, the desk sync)."""
    o = t.outbox
    seqs = list(seqs)
    if not seqs:
        return []
    with ledger.read() as db:
        rows = db.execute(
            select(o.c.id, o.c.kind, o.c.ref, o.c.payload, o.c.attempts, o.c.created_ms)
            .where(in_list(o.c.id, seqs), o.c.acked_ms.is_(None))
            .order_by(o.c.id)
        ).all()
    return _raw(rows)


def mark_sent(ledger: Ledger, ids: Iterable[int]) -> None:
    o = t.outbox
    ids = list(ids)
    if not ids:
        return
    with ledger.transaction() as tx:
        now = tx.now_ms
        tx.execute(
            update(o)
            .where(in_list(o.c.id, ids))
            .values(attempts=o.c.attempts + 1, last_sent_ms=now)
        )
        refs = [
            r
            for (r,) in tx.execute(
                select(o.c.ref).where(in_list(o.c.id, ids), o.c.kind == "payment")
            )
        ]
        tx.execute(
            update(t.payments)
            .where(in_list(t.payments.c.id, refs), t.payments.c.status == PaymentStatus.QUEUED)
            .values(status=PaymentStatus.SENT, updated_ms=now)
        )
