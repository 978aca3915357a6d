"""What the technician's status page says about each device beyond its current state.

- `SyncState`: the MQTT link to the desk as the sync agent reports it to the engine
  (kiosk/ never imports sync/: the agent calls the engine's `note_sync_*` methods).
- `DeviceError`: the last error seen per device (acceptor, printer, ledger/disk, MQTT),
  kept by the engine since it started; the status falls back to the ledger's newest
  warning or error event of that device, so a restart does not blank it.
- The event groups: which event kinds belong to which device, for the status page and
  for the technician's filtered events list (`tech.events` with `device`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


class EventGroup(enum.Enum):
    ACCEPTOR = "acceptor"
    PRINTER = "printer"
    LEDGER = "ledger"  # the ledger file and the data disk
    MQTT = "mqtt"  # the link to the desk and what the desk sent
    TECHNICIAN = "technician"  # logins and actions: hidden from the list unless asked
    # (an encashment is not among them: it is the cassette's story, always listed)


DEVICES = (EventGroup.ACCEPTOR, EventGroup.PRINTER, EventGroup.LEDGER, EventGroup.MQTT)


@dataclass(frozen=True)
class KindMatch:
    """Event kinds of one group: exact names and name prefixes."""

    kinds: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def matches(self, kind: str) -> bool:
        return kind in self.kinds or any(kind.startswith(p) for p in self.prefixes)


GROUPS: Mapping[EventGroup, KindMatch] = {
    EventGroup.ACCEPTOR: KindMatch(
        kinds=("acceptor_fault", "acceptor_recovered", "unknown_bill_stacked",
               "duplicate_stacked_ignored", "escrow_outcome_unknown", "unclaimed_credit"),
    ),
    EventGroup.PRINTER: KindMatch(kinds=("receipt_not_printed",), prefixes=("printer_",)),
    EventGroup.LEDGER: KindMatch(kinds=("session_recovered",), prefixes=("ledger_", "disk_")),
    EventGroup.MQTT: KindMatch(
        kinds=("publish_refused", "config_applied", "mqtt_disconnected",
               "session_reset"),
        prefixes=("desk_", "command_", "config_", "payment_status_"),
    ),
    EventGroup.TECHNICIAN: KindMatch(
        kinds=("acceptor_test", "restart_requested", "receipt_reprinted"),
        prefixes=("technician_",),
    ),
}

SEVERITIES = ("info", "warning", "error")
PROBLEM_SEVERITIES = ("warning", "error")


def group_of(kind: str) -> EventGroup | None:
    for group, match in GROUPS.items():
        if match.matches(kind):
            return group
    return None


@dataclass(frozen=True)
class DeviceError:
    """One device's last error: the event kind (or `disconnected`, `ledger_failed`), the
    raw detail technicians quote to support, and when (wall clock, ms)."""

    device: str
    code: str
    detail: str
    at_ms: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def error_detail(data: Mapping[str, Any]) -> str:
    """The raw part of an event's data worth quoting: status and device detail first."""
    parts = [str(data[k]) for k in ("status", "detail", "reason") if data.get(k)]
    if not parts:
        parts = [f"{k}={v}" for k, v in sorted(data.items())]
    return " ".join(parts)[:200]


@dataclass(frozen=True)
class SyncState:
    """The desk link: `enabled` ([mqtt] enabled), connected or not since `since_ms`,
    the last delivery the desk acknowledged, the last disconnection's reason, and when
    the desk's beat was last heard (a desk worker storing this terminal's records is up,
    even with nothing to deliver)."""

    enabled: bool
    connected: bool = False
    since_ms: int | None = None
    last_delivery_ms: int | None = None
    last_error: str = ""
    last_error_ms: int | None = None
    desk_heard_ms: int | None = None
    # The broker link as the sync agent sees it (sync/connection.py LinkStatus.as_dict):
    # endpoint, protocol level, state since, problem code and its Russian/English text.
    link: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["link"] = dict(self.link) if self.link is not None else None
        return d
