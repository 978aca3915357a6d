"""How long the desk keeps what grows with time and nobody settles: health reports and
quarantined messages (docs/desk.md, "Retention").

A network of 20,000 terminals reporting health every minute writes about 29 million
health rows a day; without a limit the operator's database grows until its disk is full.
Money records (payments, statuses, commands, audit) are never deleted here.

Every worker prunes at its health interval, in small batches so that an ingest
transaction never waits long behind a delete; workers pruning at the same moment only
delete the same rows, which is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, delete, select

from sync.desk_service import schema as s
from sync.desk_service.db import DeskDB

DAY_MS = 86_400_000
DEFAULT_HEALTH_DAYS = 30
DEFAULT_QUARANTINE_DAYS = 90
BATCH_ROWS = 2_000  # rows one delete transaction removes at most
MAX_BATCHES = 50  # per table and pruning round: the rest waits for the next round


@dataclass(frozen=True)
class Retention:
    """Days to keep each kind of row; 0 keeps it for ever."""

    health_days: int = DEFAULT_HEALTH_DAYS
    quarantine_days: int = DEFAULT_QUARANTINE_DAYS

    def __post_init__(self) -> None:
        for name in ("health_days", "quarantine_days"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"retention {name} must be a whole number of days >= 0, "
                                 f"not {value!r}")


@dataclass(frozen=True)
class Pruned:
    health: int = 0
    quarantine: int = 0

    @property
    def total(self) -> int:
        return self.health + self.quarantine


def _prune_table(store: DeskDB, table: Table, cutoff_ms: int) -> int:
    """Delete rows received before `cutoff_ms`, oldest first, BATCH_ROWS at a time."""
    removed = 0
    for _ in range(MAX_BATCHES):
        oldest = (select(table.c.id).where(table.c.received_ms < cutoff_ms)
                  .order_by(table.c.received_ms).limit(BATCH_ROWS).scalar_subquery())
        with store.transaction() as conn:
            count = conn.execute(delete(table).where(table.c.id.in_(oldest))).rowcount
        removed += count
        if count < BATCH_ROWS:
            break
    return removed


def prune(store: DeskDB, retention: Retention, now_ms: int) -> Pruned:
    """One pruning round; what it deleted."""
    health = quarantine = 0
    if retention.health_days:
        health = _prune_table(store, s.health_history, now_ms - retention.health_days * DAY_MS)
    if retention.quarantine_days:
        quarantine = _prune_table(store, s.quarantine,
                                  now_ms - retention.quarantine_days * DAY_MS)
    return Pruned(health, quarantine)
