"""Technician operations: encashment, counters, reprints, test print, service mode.

Each one needs a PIN-authenticated technician session (kiosk.technician) and is recorded
as an event for the desk. They run through the engine's `run_exclusive` (atomic with
customer intents and device callbacks), so a technician can never empty the cassette under
a customer who is paying.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from kiosk import receipts
from kiosk.device_health import (
    DEVICES,
    GROUPS,
    PROBLEM_SEVERITIES,
    DeviceError,
    EventGroup,
    error_detail,
)
from kiosk.engine import EngineStatus, IntentError, PaymentEngine
from kiosk.ledger import LedgerError

EVENT_DEVICES = ("devices", "all", *(g.value for g in EventGroup))
EVENT_SEVERITIES = {"all": (), "warning": PROBLEM_SEVERITIES, "error": ("error",)}


def _local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000).astimezone()


def _local_or_none(ms: int | None) -> datetime | None:
    return None if ms is None else _local(ms)


def encash(engine: PaymentEngine, technician: str) -> dict[str, Any]:
    """Empty the cassette (M7): one ledger transaction, then the printed report."""
    report = engine.run_exclusive(lambda: engine.ledger.encash(technician))
    document = receipts.encashment_report(
        engine.terminal_info(),
        receipts.EncashmentData(
            encashment_id=report["id"],
            created_at=_local(report["at_ms"]),
            period_start=_local_or_none(report["period_start_ms"]),
            technician=technician,
            counts=tuple((c["amount_minor"], c["count"]) for c in report["counts"]),
            total_minor=report["total_minor"],
            currency=report["currency"],
            unknown_outcomes=tuple(
                (u["amount_minor"], u["currency"]) for u in report["unknown_outcomes"]
            ),
        ),
    )
    report["printed"] = engine.print_document(document)
    return report


def ledger_init(engine: PaymentEngine, confirm: str, reason: str) -> dict[str, Any]:
    """The technician's explicit "start a new ledger" (docs/ledger.md, Ledger identity).

    Only for a ledger that is not this terminal's (missing, replaced, deleted under the
    core): a healthy ledger holding unsent payments is never thrown away from here. The
    terminal id typed back is the confirmation; the new ledger records who and why in a
    `ledger_initialised` event that goes to the desk.
    """
    tid = engine.config.terminal.id
    if confirm != tid:
        raise IntentError("not_confirmed", f"type the terminal id ({tid}) to confirm a new ledger")

    def start_new() -> dict[str, Any]:
        if engine.ledger.blocked is None:
            raise IntentError(
                "ledger_ok", "the ledger is this terminal's own and in use: nothing to do"
            )
        result = engine.ledger.initialise_new("technician", reason)
        engine.ledger_reinitialised()
        return {**result, "out_of_service": sorted(engine.status().out_of_service)}

    return engine.run_exclusive(start_new)


def counters(engine: PaymentEngine) -> dict[str, Any]:
    try:
        cassette = engine.ledger.cassette_counts()
        queue = engine.ledger.queue_stats()
    except LedgerError as exc:  # the status must still say why the terminal is down
        return {
            "cassette": [],
            "bill_count": None,
            "total_minor": None,
            "queue": {"payments_unsent": None, "oldest_unsent_ms": None},
            "ledger_error": str(exc),
        }
    return {
        "cassette": cassette,
        "bill_count": sum(c["count"] for c in cassette),
        "total_minor": sum(c["count"] * c["amount_minor"] for c in cassette),
        "queue": queue,
    }


def reprint(engine: PaymentEngine, payment_id: str) -> dict[str, Any]:
    document = engine.payment_document(payment_id, copy=True)
    printed = engine.print_document(document)
    engine.record_event("receipt_reprinted", "info", {"payment_id": payment_id, "printed": printed})
    return {"payment_id": payment_id, "printed": printed}


def test_print(engine: PaymentEngine) -> dict[str, Any]:
    document = receipts.test_page(engine.terminal_info(), engine.config.printer.kind)
    return {"printed": engine.print_document(document)}


def set_service_mode(engine: PaymentEngine, on: bool) -> dict[str, Any]:
    """Take the terminal out of service for maintenance (or back), between customers."""

    def switch() -> EngineStatus:
        if on:
            engine.set_out_of_service("service", "technician service mode")
        else:
            engine.clear_out_of_service("service")
        return engine.status()

    st = engine.run_exclusive(switch, between_customers=on)
    return {"out_of_service": sorted(st.out_of_service)}


def acceptor_test(engine: PaymentEngine, on: bool) -> dict[str, Any]:
    """Technician acceptor test: every bill is read and returned, never credited. The
    terminal is out of service for customers meanwhile."""
    seen = engine.set_acceptor_test(on)
    return {"on": on, "bills_seen": [dataclasses.asdict(b) for b in seen]}


def acceptor_test_results(engine: PaymentEngine) -> dict[str, Any]:
    return _test_results(engine.status())


def _test_results(st: EngineStatus) -> dict[str, Any]:
    seen = st.acceptor_test
    return {"on": seen is not None, "bills_seen": [dataclasses.asdict(b) for b in seen or ()]}


def request_restart(engine: PaymentEngine) -> dict[str, Any]:
    """Ask the daemon to restart the core (systemd starts it again), between customers."""

    def restart() -> dict[str, Any]:
        engine.record_event("restart_requested", "info", {"by": "technician"})
        engine.request_restart()  # between customers: run_exclusive checked it
        return {"restarting": True}

    return engine.run_exclusive(restart)


def events(
    engine: PaymentEngine, limit: int, device: str = "devices", severity: str = "all"
) -> list[dict[str, Any]]:
    """The technician's events list, newest first. `device`: one group (acceptor,
    printer, ledger, mqtt, technician), `all`, or `devices` (the default: everything but
    the technician's own logins and actions). `severity`: all, warning (and worse), error."""
    if device not in EVENT_DEVICES:
        raise IntentError("bad_request", f"device must be one of {', '.join(EVENT_DEVICES)}",
                          {"field": "device", "allowed": list(EVENT_DEVICES)})
    if severity not in EVENT_SEVERITIES:
        raise IntentError("bad_request", f"severity must be one of {', '.join(EVENT_SEVERITIES)}",
                          {"field": "severity", "allowed": list(EVENT_SEVERITIES)})
    severities = EVENT_SEVERITIES[severity]
    if device == "all":
        return engine.ledger.recent_events(limit, severities=severities)
    if device == "devices":
        match, exclude = GROUPS[EventGroup.TECHNICIAN], True
    else:
        match, exclude = GROUPS[EventGroup(device)], False
    return engine.ledger.recent_events(
        limit, kinds=match.kinds, prefixes=match.prefixes, exclude=exclude,
        severities=severities,
    )


def _last_errors(engine: PaymentEngine, st: EngineStatus) -> dict[str, dict[str, Any] | None]:
    """Each device's last error: the newer of the engine's (since it started; also what
    the ledger could not record, and the MQTT link's losses) and the ledger's newest
    warning or error event of that device (written by the ledger itself, or before a
    restart)."""
    out: dict[str, dict[str, Any] | None] = {}
    for group in DEVICES:
        err = st.device_errors.get(group.value)
        match = GROUPS[group]
        try:
            rows = engine.ledger.recent_events(
                1, kinds=match.kinds, prefixes=match.prefixes, severities=PROBLEM_SEVERITIES
            )
        except LedgerError:
            rows = []
        if rows and (err is None or rows[0]["at_ms"] > err.at_ms):
            r = rows[0]
            err = DeviceError(group.value, r["kind"], error_detail(r["data"]), r["at_ms"])
        out[group.value] = None if err is None else err.as_dict()
    return out


def status(engine: PaymentEngine) -> dict[str, Any]:
    """Health as the technician and the desk see it, reasons included."""
    snap = engine.snapshot()
    st = engine.status()
    return {
        "terminal_id": st.terminal_id,
        "screen": snap["screen"],
        "out_of_service": dict(st.out_of_service),
        "acceptor": {
            "status": st.acceptor_status.value,
            "detail": st.acceptor_detail,
            "info": {
                "protocol": st.acceptor_info.protocol,
                "model": st.acceptor_info.model,
                "serial": st.acceptor_info.serial_number,
            },
        },
        "printer": snap["printer"],
        "support_phone": st.support_phone,
        "acceptor_test": _test_results(st),
        "sync": st.sync.as_dict(),
        "last_errors": _last_errors(engine, st),
        **counters(engine),
    }
