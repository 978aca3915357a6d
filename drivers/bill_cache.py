"""The acceptor's bill table on disk, for both protocols: written whenever the unit's table
is read, read at start-up before the unit has answered.

It matters after a crash between a credit and its ACK: the unit then reports the stacked
bill before it will answer a table request, and only this cache names it. It is only a
cache: an unreadable file is ignored.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from drivers.acceptor import Bill

log = logging.getLogger(__name__)


def save_bills(path: Path, bills: Iterable[Bill]) -> None:
    """Keep the device's table on disk (atomically) for the next start; see `load_bills`."""
    data = [{"bill_type": b.bill_type, "amount_minor": b.amount_minor, "currency": b.currency}
            for b in bills]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def load_bills(path: Path) -> tuple[Bill, ...]:
    """The cached table, or () if there is none or it is unreadable (it is only a cache).

    It matters after a crash between a credit and its ACK: the unit then reports the
    stacked bill before it will answer GET BILL TABLE, and only this cache names it.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple(Bill(int(d["amount_minor"]), str(d["currency"]), int(d["bill_type"]))
                     for d in data)
    except FileNotFoundError:
        return ()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable bill-table cache %s: %s", path, exc)
        return ()
