"""Crash test (M2, M5, M6, M7): the core is killed with SIGKILL at random instants during
at least 200 payments, many kills landing between a stacked bill's commit and its ACK.

The virtual acceptor keeps its own fsynced journal, like a real device's memory that
survives the host: it is the ground truth of what went into the cassette. At the end every
stacked bill must be in exactly one payment or unclaimed-credit record, amounts must add
up, and the cassette counters must equal the bills stacked.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import threading
import time
from collections import Counter

import pytest

from drivers.virtual_acceptor import read_journal
from kiosk.api_client import ApiClient, ApiRequestError
from kiosk.scripted import inbox_feeder, run_payment
from tests.core.daemon import Core, write_config

PAYMENTS = 200
MIN_KILLS = 15
MIN_ACK_WINDOW_KILLS = 5
TIME_BUDGET_S = 400
SEED = 20261123
BILLS = (10, 50, 100, 500, 1000)


class Killer(threading.Thread):
    """Kills the core at a random instant; prefers the moment a bill is stacked and not
    yet acknowledged (the journal's last record is 'stacked')."""

    def __init__(self, core: Core, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.core, self.rng = core, rng
        self.kills = 0
        self.kills_in_ack_window = 0
        self.stop = threading.Event()
        self.armed = threading.Event()

    def _last_op(self) -> str | None:
        try:
            with open(self.core.journal, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 200))
                tail = f.read().splitlines()
            return json.loads(tail[-1]).get("op") if tail else None
        except (OSError, ValueError, IndexError):
            return None

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.armed.wait(0.05):
                continue
            if self.stop.wait(self.rng.uniform(0.2, 1.2)):
                return
            targeted = self.rng.random() < 0.7
            deadline = time.monotonic() + 1.0
            in_window = False
            while targeted and time.monotonic() < deadline and not self.stop.is_set():
                if self._last_op() == "stacked":
                    in_window = True
                    break
                time.sleep(0.0005)
            with self.core.lock:  # never in the middle of a (re)start
                proc = self.core.proc
                if proc is not None and proc.poll() is None and self.armed.is_set():
                    self.armed.clear()
                    self.core.kill()
                    self.kills += 1
                    self.kills_in_ack_window += in_window


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_during_payments_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(SEED)
    core = Core(write_config(tmp_path, "[acceptor]\nack_delay_ms = 25\n"), tmp_path)
    killer = Killer(core, random.Random(SEED + 1))
    killer.start()
    feed = inbox_feeder(core.inbox)
    completed = interrupted = 0
    reasons: Counter[str] = Counter()
    try:
        started = time.monotonic()
        while (
            completed + interrupted < PAYMENTS
            or killer.kills < MIN_KILLS
            or killer.kills_in_ack_window < MIN_ACK_WINDOW_KILLS
        ) and time.monotonic() - started < TIME_BUDGET_S:
            with core.lock:
                if core.proc is None or core.proc.poll() is not None:
                    core.start()
                    killer.armed.set()
            bills = [rng.choice(BILLS) for _ in range(rng.randint(1, 3))]
            try:
                with ApiClient(core.socket, timeout=5) as client:
                    client.connect()
                    run_payment(client, "mts", "9161234567", bills, feed, timeout=10)
                completed += 1
            except (ConnectionError, TimeoutError, OSError, ApiRequestError) as exc:
                interrupted += 1
                reasons[type(exc).__name__] += 1
                if core.proc is not None:  # let the kill finish before the next round
                    try:
                        core.proc.wait(timeout=3)
                    except subprocess.TimeoutExpired:
                        pass
    finally:
        killer.stop.set()
        killer.join(timeout=5)
    # One clean start lets the core reconcile what the last kill left, then stop it.
    if core.proc is not None and core.proc.poll() is None:
        assert core.stop() == 0  # never two daemons on one ledger
    core.start()
    with ApiClient(core.socket, timeout=10) as client:
        client.connect()
        client.wait_for(lambda s: s["screen"] == "idle", timeout=20)
    assert core.stop() == 0

    device = read_journal(core.journal)
    db = sqlite3.connect(core.ledger)
    stacked = db.execute(
        "SELECT count(*), COALESCE(SUM(amount_minor), 0) FROM stacked_bills"
    ).fetchone()
    orphans = db.execute("SELECT count(*) FROM stacked_bills WHERE payment_id IS NULL").fetchone()[
        0
    ]
    mismatched = db.execute(
        "SELECT p.id FROM payments p LEFT JOIN stacked_bills b ON b.payment_id = p.id "
        "GROUP BY p.id HAVING p.inserted_minor != COALESCE(SUM(b.amount_minor), 0)"
    ).fetchall()
    payments_total = db.execute("SELECT COALESCE(SUM(inserted_minor), 0) FROM payments").fetchone()[
        0
    ]
    kinds = Counter(k for (k,) in db.execute("SELECT kind FROM payments"))
    numbers = [n for (n,) in db.execute("SELECT number FROM payments ORDER BY number")]
    cassette = dict(db.execute("SELECT amount_minor, count FROM cassette WHERE count > 0"))
    by_bill = dict(
        db.execute("SELECT amount_minor, count(*) FROM stacked_bills GROUP BY amount_minor")
    )
    lost = device.stacked - stacked[0]
    duplicated = max(0, stacked[0] - device.stacked)

    print(
        f"\ncrash test: payments attempted {completed + interrupted} (completed {completed}, "
        f"interrupted {interrupted}); kills {killer.kills} "
        f"({killer.kills_in_ack_window} between stacked and ACK); bills stacked "
        f"{device.stacked}; payments {kinds['payment']}, unclaimed {kinds['unclaimed']}; "
        f"lost {lost}, duplicated {duplicated}; interruptions {dict(reasons)}"
    )
    assert completed + interrupted >= PAYMENTS
    assert killer.kills >= MIN_KILLS, "the test must actually crash the core"
    assert killer.kills_in_ack_window >= MIN_ACK_WINDOW_KILLS, "kills between commit and ACK"
    assert device.unacked is None  # the device got every ACK in the end
    assert lost == 0 and duplicated == 0
    assert stacked[1] == device.stacked_amount_minor
    assert orphans == 0  # every bill in exactly one payment or unclaimed record
    assert mismatched == []
    assert payments_total == device.stacked_amount_minor
    assert numbers == list(range(1, len(numbers) + 1))  # M5: no gaps, no repeats
    assert cassette == by_bill  # M7: no encashment happened
