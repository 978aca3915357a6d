"""`python -m tests.chaos.faultcore run --config FILE`: the real core daemon with a disk
fault hook, for the M10 runs (tests/chaos/disk.py).

Everything is `kiosk run` unchanged (agent.cli.main), except that every Ledger the
process opens is remembered and a thread watches the control file named by
KIOSK_FAULT_DISK_FILE. Writing one word to that file sets the disk's state through
SQLite's own limits, on the ledger's own connection, between two transactions:

- `full`: `PRAGMA max_page_count = <pages in use now>`; SQLITE_FULL ("database or disk
  is full") as soon as a write needs a new page;
- `readonly`: `PRAGMA query_only = ON`; SQLITE_READONLY on every write (and on every
  BEGIN IMMEDIATE), like a file system remounted read-only;
- `ok`: `PRAGMA query_only = OFF; PRAGMA max_page_count = 1073741823`: the disk is back.

The state applied is echoed to the daemon's log as `FAULT disk=<word>`. Nothing in
kiosk/ knows about this hook; production never loads it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from agent.cli import main
from kiosk.ledger import Ledger

ENV = "KIOSK_FAULT_DISK_FILE"
POLL_S = 0.02
UNLIMITED_PAGES = 1073741823

_ledgers: list[Ledger] = []
_original_open = Ledger.open


def _remembering_open(self: Ledger, *args: Any, **kwargs: Any) -> Any:
    result = _original_open(self, *args, **kwargs)
    _ledgers.append(self)
    return result


def apply(ledger: Ledger, word: str) -> None:
    # Ledger.pragma: on the ledger's own connection, between two of its transactions.
    if word == "full":
        ledger.pragma("max_page_count", int(ledger.pragma("page_count")))
    elif word == "readonly":
        ledger.pragma("query_only", "ON")
    elif word == "ok":
        ledger.pragma("query_only", "OFF")
        ledger.pragma("max_page_count", UNLIMITED_PAGES)
    else:
        raise ValueError(f"unknown disk state {word!r}")


def _watch(path: str) -> None:
    current = "ok"
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                word = f.read().strip() or "ok"
        except FileNotFoundError:
            word = "ok"
        if word != current and _ledgers:
            for ledger in list(_ledgers):
                try:
                    apply(ledger, word)
                except Exception as exc:  # a closed ledger at shutdown, or a bad word
                    print(f"FAULT hook error: {exc}", file=sys.stderr, flush=True)
            current = word
            print(f"FAULT disk={word}", file=sys.stderr, flush=True)
        time.sleep(POLL_S)


def install() -> None:
    Ledger.open = _remembering_open  # type: ignore[method-assign]
    path = os.environ.get(ENV)
    if path:
        threading.Thread(target=_watch, args=(path,), name="fault-disk", daemon=True).start()


if __name__ == "__main__":
    install()
    sys.exit(main())
