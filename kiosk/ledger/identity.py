"""The ledger's identity marker: a small fsynced file beside the ledger that outlives it.

Payment ids are `TERMINAL-NNNNNNNN` and the desk knows a payment by its id, so a number
must never be issued twice by one terminal, whatever happens to the ledger file (M5). The
ledger alone cannot promise that: deleted, emptied or replaced by an old copy, it would
count from 1 again. The marker remembers, outside the ledger:

- which ledger belongs here (`ledger_id`, also in the ledger's `ledger_identity` table);
- the highest payment number and event id that may have been used (`payment_reserved`,
  `event_reserved`). The ledger reserves numbers in blocks and writes the marker, durably,
  before it commits the first number above the reservation; a new ledger starts above the
  reservation, so its ids cannot collide with any the old ledger ever sent.

A terminal whose marker exists has run before: a missing ledger, or one with another
identity, is not created or adopted silently; the core stays out of service until a
technician initialises a new ledger (`kiosk ledger init --new`). See docs/ledger.md.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from kiosk.durable_file import replace_file

MARKER_FORMAT = 1
MARKER_SUFFIX = ".identity"
PAYMENT_BLOCK = 100  # payment numbers reserved per marker write
EVENT_BLOCK = 1000  # event ids reserved per marker write
MARKER_MODE = 0o640  # owner writes, the service group reads


class MarkerError(RuntimeError):
    """The marker cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class Marker:
    terminal_id: str
    ledger_id: str
    payment_reserved: int  # every payment number issued so far is <= this
    event_reserved: int  # every event id issued so far is <= this
    updated_ms: int
    format: int = MARKER_FORMAT

    def reserving(self, payment: int = 0, event: int = 0, now_ms: int = 0) -> Marker:
        """This marker with room for `payment` and `event` (a block beyond each)."""
        return replace(
            self,
            payment_reserved=max(self.payment_reserved, payment + PAYMENT_BLOCK if payment else 0),
            event_reserved=max(self.event_reserved, event + EVENT_BLOCK if event else 0),
            updated_ms=now_ms or self.updated_ms,
        )


def marker_path(ledger_path: Path) -> Path:
    return ledger_path.with_name(ledger_path.name + MARKER_SUFFIX)


def new_ledger_id() -> str:
    return uuid.uuid4().hex


def read_marker(path: Path) -> Marker | None:
    """The marker, or None when there is none (a terminal that never ran)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise MarkerError(f"cannot read the ledger marker {path}: {exc}") from exc
    try:
        data = json.loads(text)
        marker = Marker(
            terminal_id=str(data["terminal_id"]),
            ledger_id=str(data["ledger_id"]),
            payment_reserved=int(data["payment_reserved"]),
            event_reserved=int(data["event_reserved"]),
            updated_ms=int(data["updated_ms"]),
            format=int(data["format"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise MarkerError(f"the ledger marker {path} is damaged: {exc}") from exc
    if marker.format != MARKER_FORMAT:
        raise MarkerError(f"the ledger marker {path} has unknown format {marker.format}")
    return marker


def write_marker(path: Path, marker: Marker) -> None:
    """Replace the marker atomically and durably: temp file, fsync, rename, fsync folder."""
    data = json.dumps(asdict(marker), sort_keys=True, indent=1).encode() + b"\n"
    try:
        replace_file(path, data, MARKER_MODE)
    except OSError as exc:
        raise MarkerError(f"cannot write the ledger marker {path}: {exc.strerror}") from exc
