"""Build a ledger that looks like a year of trade: 100,000 finished payments in seconds.

Going through Ledger.record_* would take minutes (every call is a durable commit), so the
schema is created by the real migrations (Ledger.open) and the rows are then bulk-inserted
with sqlite3 in one transaction, shaped as the Ledger writes them: per payment a finished
session, 1-4 escrows and stacked bills, the payment row, its confirmed/queued history and
its outbox message (acknowledged by the desk, except the newest few); an encashment every
400 payments (about a cassette) and the cassette counters for the bills since the last one.

`build(path, n, unsent=n)` leaves every payment queued with its outbox message never sent
and never acknowledged: the backlog of a terminal whose desk has been away (the outbox
payload is the one kiosk/ledger/store.py `_payment_payload` writes, status "queued").
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from kiosk.catalog import DEMO_CATALOG
from kiosk.ledger import Ledger
from kiosk.ledger.store import NUMBER_WIDTH, PAYMENT_COUNTER

TERMINAL_ID = "T0001"
ENCASH_EVERY = 400  # payments between encashments: about 1,000 bills, a cassette
UNSENT_TAIL = 10  # the newest payments still wait in the outbox (the desk is away)
SPACING_MS = 5 * 60 * 1000  # one payment every five minutes
DENOMINATIONS = ((10_000, 2), (50_000, 4), (100_000, 5), (200_000, 6), (500_000, 7))
RUN_ID = "benchfill0000000"


def _account(rng: random.Random, pattern: str) -> str:
    if pattern.startswith("9"):
        return "9" + "".join(rng.choice("0123456789") for _ in range(9))
    digits = 12 if "12" in pattern else 10
    return "".join(rng.choice("0123456789") for _ in range(digits))


def build(path: Path, payments: int, seed: int = 42,
          unsent: int = UNSENT_TAIL, terminal_id: str = TERMINAL_ID) -> dict[str, Any]:
    """Create `path` with `payments` finished payments; returns row counts and build time.

    The newest `unsent` payments stay queued, their outbox messages never sent nor
    acknowledged (`unsent=payments`: the whole ledger waits for the desk). `terminal_id`:
    whose ledger it is (a fleet of them for bench/desk.py).
    """
    t0 = time.perf_counter()
    unsent = max(0, min(unsent, payments))
    ledger = Ledger(path, terminal_id)
    ledger.open()  # the real migrations make the schema
    ledger.close()

    rng = random.Random(seed)
    providers = DEMO_CATALOG.providers
    start_ms = int(time.time() * 1000) - payments * SPACING_MS
    sessions, escrows, bills, pays, history, outbox = [], [], [], [], [], []
    encashments: list[tuple[Any, ...]] = []
    bill_id = 0
    last_encashed = (payments - 1) // ENCASH_EVERY * ENCASH_EVERY
    cassette: dict[int, int] = {}
    period = [0, 0]  # bills and total since the last encashment
    for n in range(1, payments + 1):
        p = providers[n % len(providers)]
        now = start_ms + n * SPACING_MS
        pid = f"{terminal_id}-{n:0{NUMBER_WIDTH}d}"
        account = _account(rng, p.account_pattern)
        chosen: list[tuple[int, int]] = []
        for _ in range(rng.randint(1, 4)):
            bill = rng.choice(DENOMINATIONS)
            if sum(a for a, _ in chosen) + bill[0] <= p.max_minor:
                chosen.append(bill)
        inserted = sum(a for a, _ in chosen)
        fee = min(max(p.commission(inserted), 0), inserted)
        encash_id = (n - 1) // ENCASH_EVERY + 1
        encashed = n <= last_encashed
        sessions.append((n, p.id, account, "finished", inserted, "RUB", now - 60_000, now, pid))
        summary: dict[int, int] = {}
        for amount, bill_type in chosen:
            bill_id += 1
            escrows.append((bill_id, n, amount, "RUB", bill_type, "stacked", now - 30_000,
                            now - 29_000, RUN_ID))
            bills.append((bill_id, f"virtual:bench:{bill_id}", bill_id, n, pid, amount, "RUB",
                          bill_type, 0, now - 29_000, RUN_ID, encash_id if encashed else None))
            summary[amount] = summary.get(amount, 0) + 1
            period[0] += 1
            period[1] += amount
            if not encashed:
                cassette[amount] = cassette.get(amount, 0) + 1
        sent = n <= payments - unsent
        status = "processed" if sent else "queued"
        pays.append((pid, n, "payment", n, p.id, account, inserted, fee, inserted - fee, "RUB",
                     status, None, None, now, now + (90_000 if sent else 0), now + 5_000, 0))
        history.append((pid, "confirmed", None, now))
        history.append((pid, "queued", None, now))
        payload = {
            "id": pid, "number": n, "kind": "payment", "session_id": n, "provider_id": p.id,
            "account": account, "inserted_minor": inserted, "commission_minor": fee,
            "credited_minor": inserted - fee, "currency": "RUB", "status": "queued",
            "note": None, "created_ms": now, "reprocess_count": 0, "terminal_id": terminal_id,
            "bills": [{"amount_minor": a, "currency": "RUB", "count": c}
                      for a, c in sorted(summary.items())],
        }
        outbox.append(("payment", pid, json.dumps(payload, ensure_ascii=False, sort_keys=True),
                       now, 1 if sent else 0, now + 1_000 if sent else None,
                       now + 2_000 if sent else None))
        if encashed and n % ENCASH_EVERY == 0:
            encashments.append((encash_id, now + 60_000, "technician", period[0], period[1],
                                "RUB", "{}"))
            period = [0, 0]

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a build, not money: one fsync at the end
        conn.execute("PRAGMA foreign_keys=ON")  # the rows must be as consistent as real ones
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO sessions (id, provider_id, account, state, inserted_minor,"
                         " currency, started_ms, updated_ms, payment_id)"
                         " VALUES (?,?,?,?,?,?,?,?,?)", sessions)
        conn.executemany("INSERT INTO escrows (id, session_id, amount_minor, currency, bill_type,"
                         " state, created_ms, resolved_ms, run_id) VALUES (?,?,?,?,?,?,?,?,?)",
                         escrows)
        conn.executemany("INSERT INTO payments (id, number, kind, session_id, provider_id,"
                         " account, inserted_minor, commission_minor, credited_minor, currency,"
                         " status, status_detail, note, created_ms, updated_ms,"
                         " receipt_printed_ms, reprocess_count)"
                         " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", pays)
        conn.executemany("INSERT INTO encashments (id, at_ms, technician, bill_count,"
                         " total_minor, currency, report) VALUES (?,?,?,?,?,?,?)", encashments)
        conn.executemany("INSERT INTO stacked_bills (id, event_key, escrow_id, session_id,"
                         " payment_id, amount_minor, currency, bill_type, recovered, stacked_ms,"
                         " run_id, encashment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", bills)
        conn.executemany("INSERT INTO payment_history (payment_id, status, detail, at_ms)"
                         " VALUES (?,?,?,?)", history)
        conn.executemany("INSERT INTO outbox (kind, ref, payload, created_ms, attempts,"
                         " last_sent_ms, acked_ms) VALUES (?,?,?,?,?,?,?)", outbox)
        conn.execute("INSERT INTO counters (name, value) VALUES (?, ?)",
                     (PAYMENT_COUNTER, payments))
        conn.executemany("INSERT INTO cassette (amount_minor, currency, count) VALUES (?,?,?)",
                         [(a, "RUB", c) for a, c in sorted(cassette.items())])
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA user_version")  # a last read with FULL on, then close cleanly
    finally:
        conn.close()
    size = path.stat().st_size
    return {
        "payments": payments, "stacked_bills": len(bills), "history": len(history),
        "outbox": len(outbox), "unsent": unsent, "encashments": len(encashments),
        "bytes": size,
        "seconds": time.perf_counter() - t0,
    }
