"""The `health` snapshot (retained): what the desk's monitoring shows per terminal.

Built on the agent's worker thread from the engine's frozen status view (taken under the
engine's lock, briefly, no I/O); ledger figures are read outside it.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from typing import Any

import paho.mqtt
from sqlalchemy.exc import SQLAlchemyError

from kiosk import __version__
from kiosk.engine import PaymentEngine
from kiosk.help_events import session_context
from kiosk.ledger import Ledger, LedgerError
from kiosk.ledger import desk as desk_ledger


def build_health(
    engine: PaymentEngine,
    ledger: Ledger,
    *,
    connection_id: str,
    started_monotonic: float,
    config_version: int,
) -> dict[str, Any]:
    st = engine.status()
    screen = st.screen.value
    oos = dict(st.out_of_service)
    acceptor = {
        "status": st.acceptor_status.value,
        "detail": st.acceptor_detail,
        "protocol": st.acceptor_info.protocol,
        "model": st.acceptor_info.model,
        "serial": st.acceptor_info.serial_number,
    }
    printer_status = st.printer_status
    support_phone = st.support_phone
    terminal_id = st.terminal_id
    # The desk needs health most when the ledger fails: say so, never crash (M10).
    ledger_state: dict[str, Any] = {"ok": True, "error": None}
    cassette: list[dict[str, Any]] | None = None
    queue: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    try:
        cassette = [
            {**c, "value_minor": c["amount_minor"] * c["count"]} for c in ledger.cassette_counts()
        ]
        queue = desk_ledger.outbox_depth(ledger)
        last = desk_ledger.last_payment(ledger)
    except (LedgerError, OSError, SQLAlchemyError) as exc:
        ledger_state = {"ok": False, "error": f"ledger failed: {str(exc)[:200]}"}
    try:
        usage = shutil.disk_usage(ledger.path.parent)
        disk: dict[str, int | None] = {"free_bytes": usage.free, "total_bytes": usage.total}
    except OSError:
        disk = {"free_bytes": None, "total_bytes": None}
    return {
        "v": 1,
        "terminal_id": terminal_id,
        "at_ms": int(time.time() * 1000),
        "connection_id": connection_id,
        "screen": screen,
        "in_service": not oos,
        "out_of_service": oos,
        "acceptor": acceptor,
        "printer": {"status": printer_status.value, "can_print": printer_status.can_print},
        "paper": _paper(printer_status.value),
        "ledger": ledger_state,
        "cassette": None
        if cassette is None
        else {
            "bills": sum(c["count"] for c in cassette),
            "total_minor": sum(c["value_minor"] for c in cassette),
            "by_denomination": cassette,
        },
        "queue": queue,
        "last_payment": last,
        "disk": disk,
        "uptime_s": round(time.monotonic() - started_monotonic),
        "versions": {
            "agent": __version__,
            "python": platform.python_version(),
            "paho_mqtt": paho.mqtt.__version__,
        },
        "config_version": config_version,
        "support_phone": support_phone,
        "help": _help_view(engine),
    }


def _help_view(engine: PaymentEngine) -> dict[str, Any] | None:
    """While a customer has a help code: what their screen shows, for the operator who
    takes the call (read-only, masked; docs/self-service.md). None otherwise."""
    if engine.help_code is None:
        return None
    snap = engine.snapshot()
    code = snap.get("help_code")
    return None if code is None else {"code": code, **session_context(snap)}


def _paper(printer_status: str) -> str:
    if printer_status in ("paper_out", "paper_near_end"):
        return printer_status.removeprefix("paper_")
    return "ok" if printer_status == "ok" else "unknown"


def significant(health: dict[str, Any]) -> tuple[Any, ...]:
    """What counts as a change worth an immediate publish (not time, not uptime)."""
    return (
        health["screen"],
        tuple(sorted(health["out_of_service"])),
        health["acceptor"]["status"],
        health["printer"]["status"],
        health["ledger"]["ok"],
        (health["cassette"] or {}).get("bills"),
        (health["queue"] or {}).get("payments_unsent"),
        (health["last_payment"] or {}).get("id"),
        health["config_version"],
        health["support_phone"],
        json.dumps(health.get("help"), sort_keys=True),
    )
