"""`kiosk desk serve`: one long-running desk worker.

Run as many as the load needs, on one host or several, all with the same database: they
take `payments`, `events` (and `cmd/result`) from the MQTT 5 shared subscription
`$share/kiosk-desk/kiosk/v1/+/…`, so each message goes to one of them; `state` and
`health` (retained) every worker reads, and the database keeps one copy (their keys
make the repeats no-ops). Each worker has a clean session: a killed worker leaves
nothing behind at the broker, and the records it had not acknowledged are sent again by
their terminals (the outbox resends after `resend_after_s`), to whichever worker the
broker picks then.
On MQTT 3.1.1 (a NATS cluster) there is no `$share`: every worker takes every message
(the database de-duplicates) or its `--partition K/N` of the terminals (docs/fleet.md).

The worker's health is `ok` or `degraded` (the database is unreachable: the batch in
hand waits for it, nothing is acknowledged). It is logged as a health line every
interval and on every change, and written to a status file that `kiosk desk serve
--status` reads. At the same interval the worker prunes health reports and quarantined
messages older than their retention (sync/desk_service/retention.py).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from sync.desk_service.db import DeskDBError
from sync.desk_service.retention import Retention, prune

log = logging.getLogger("sync.desk.serve")

DEFAULT_HEALTH_INTERVAL_S = 30.0
STALE_FACTOR = 3  # a status file older than this many intervals: the worker is gone
EXIT_OK, EXIT_DEGRADED, EXIT_NO_STATUS = 0, 1, 2


@dataclass
class StatusFile:
    path: Path

    def write(self, status: dict[str, Any]) -> None:
        """Atomically (a reader never sees half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(status, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def read(self) -> dict[str, Any] | None:
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None


def status_of(desk: Any, interval_s: float) -> dict[str, Any]:
    st = desk.stats
    return {
        **desk.health_status.as_dict(),
        "pid": os.getpid(),
        "client_id": desk.conn.settings.client_id,
        "broker_connected": desk.conn.connected,
        "broker_link": desk.conn.link.as_dict(),
        "database": desk.store.dialect,
        "share": desk.share,  # the partitions it takes now (takeover: more than its own)
        "updated_ms": int(time.time() * 1000),
        "interval_s": interval_s,
        "messages": st.messages, "records": st.records, "new_payments": st.new_payments,
        "new_events": st.new_events, "duplicates": st.duplicates, "acks_sent": st.acks_sent,
        "quarantined": st.quarantined, "conflicts": st.conflicts,
    }


def health_line(status: dict[str, Any]) -> str:
    head = f"desk health: {status['state'].upper()}"
    if status["state"] != "ok":
        head += f" since {status['since_ms']} ({status['error']}; {status['held']} held)"
    broker = "up" if status["broker_connected"] else "DOWN"
    link = status.get("broker_link") or {}
    if not status["broker_connected"] and link.get("problem"):
        broker += f" ({link['problem']} at {link.get('endpoint')})"
    share = status.get("share", "all")
    return (f"{head} broker={broker} "
            + (f"share={share} " if share != "all" else "")
            + f"db={status['database']} messages={status['messages']} "
            f"payments={status['new_payments']} duplicates={status['duplicates']} "
            f"acks={status['acks_sent']} quarantined={status['quarantined']} "
            f"conflicts={status['conflicts']}")


def run(desk: Any, status_file: StatusFile | None, interval_s: float,
        stop: threading.Event | None = None, retention: Retention | None = None) -> int:
    """Run `desk` until SIGTERM/SIGINT (or `stop`), reporting its health and pruning
    what `retention` says is old (default: Retention())."""
    stop = stop or threading.Event()
    lock = threading.Lock()
    keep = retention or Retention()
    pruned = {"health": 0, "quarantine": 0}

    def prune_old() -> None:
        try:
            done = prune(desk.store, keep, int(time.time() * 1000))
        except (SQLAlchemyError, DeskDBError) as exc:  # the health line says degraded
            log.warning("retention: pruning failed, tried again next interval: %s",
                        str(exc).splitlines()[0])
            return
        pruned["health"] += done.health
        pruned["quarantine"] += done.quarantine
        if done.total:
            log.info("retention: deleted %d health reports older than %d days and %d "
                     "quarantined messages older than %d days", done.health,
                     keep.health_days, done.quarantine, keep.quarantine_days)

    def report(_health: Any = None) -> None:
        status = {**status_of(desk, interval_s), "pruned_health": pruned["health"],
                  "pruned_quarantine": pruned["quarantine"]}
        with lock:
            if status_file is not None:
                status_file.write(status)
        log.info("%s", health_line(status))

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    desk.on_health = report
    desk.start()
    try:
        prune_old()
        report()
        while not stop.wait(interval_s):
            prune_old()
            report()
    finally:
        desk.stop()
        if status_file is not None:
            final = {**status_of(desk, interval_s), "state": "stopped"}
            status_file.write(final)
    return EXIT_OK


def check(status_file: StatusFile) -> int:
    """`kiosk desk serve --status`: print the worker's status; 0 ok, 1 degraded or
    stopped, 2 no status (or too old: the worker is gone)."""
    status = status_file.read()
    if status is None:
        print(f"no desk status at {status_file.path}")
        return EXIT_NO_STATUS
    age_s = time.time() - status.get("updated_ms", 0) / 1000
    print(health_line(status))
    if age_s > STALE_FACTOR * float(status.get("interval_s", DEFAULT_HEALTH_INTERVAL_S)):
        print(f"status is {age_s:.0f} s old: the worker (pid {status.get('pid')}) is not "
              "reporting")
        return EXIT_NO_STATUS
    return EXIT_OK if status.get("state") == "ok" else EXIT_DEGRADED
