"""The last bill this driver sent STACK for, kept on disk (docs/protocols/
id003.md, "VEND VALID and the credit").

VEND VALID carries no denomination on most firmware [U], so the driver names the bill
from the escrow it sent STACK for. After a restart (the core died between STACK and the
VEND VALID's ACK) or a power-up with the bill in the stacker, only this file still names
it. It is written (and fsynced) before STACK goes out and marked closed once the bill is
credited or known to be returned; the engine's own escrow marker in the ledger decides
which session the bill belongs to (M6).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from drivers.acceptor import Bill

log = logging.getLogger(__name__)


class StackMarker:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._bill: Bill | None = None
        self._open = False
        if path is not None:
            self._load(path)

    @property
    def open_bill(self) -> Bill | None:
        """The bill STACK was sent for and whose outcome is not known yet."""
        return self._bill if self._open else None

    @property
    def last_bill(self) -> Bill | None:
        """The last bill STACK was sent for, whatever became of it."""
        return self._bill

    def sent(self, bill: Bill) -> None:
        self._bill, self._open = bill, True
        self._write()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._write()

    def _write(self) -> None:
        if self._path is None or self._bill is None:
            return
        data = {
            "bill_type": self._bill.bill_type,
            "amount_minor": self._bill.amount_minor,
            "currency": self._bill.currency,
            "open": self._open,
        }
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except OSError as exc:
            # The ledger holds the escrow marker that matters for money; this file only
            # names a bill after a restart. Losing it is logged, never a reason to stop.
            log.warning("cannot write stack marker %s: %s", self._path, exc)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._bill = Bill(int(data["amount_minor"]), str(data["currency"]),
                              int(data["bill_type"]))
            self._open = bool(data["open"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable stack marker %s: %s", path, exc)
