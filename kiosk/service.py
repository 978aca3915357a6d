"""Technician operations: encashment, counters, reprints, test print, service mode; and
the customer's "check my payment" and copy, which share the reprint path.

Each technician one needs a PIN-authenticated technician session (kiosk.technician) and
is recorded as an event for the desk; the customer's need the payment's check code
instead (kiosk.check_code). They run through the engine's `run_exclusive` (atomic with
customer intents and device callbacks), so a technician can never empty the cassette under
a customer who is paying.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from drivers.profiles import load_profile
from kiosk import receipts
from kiosk.check_code import LOCKED, NOT_FOUND, CheckRefused, code_matches
from kiosk.config import Config
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
from kiosk.ledger import schema as t

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


def reprint(engine: PaymentEngine, payment_id: str, by: str = "technician") -> dict[str, Any]:
    """A copy of a receipt or unclaimed slip, marked КОПИЯ / COPY, recorded for the desk.
    The one reprint path: the technician's (`tech.reprint`) and the customer's, after a
    check with the code (`customer_reprint`)."""
    document = engine.payment_document(payment_id, copy=True)
    printed = engine.print_document(document)
    engine.record_event(
        "receipt_reprinted", "info", {"payment_id": payment_id, "printed": printed, "by": by}
    )
    return {"payment_id": payment_id, "printed": printed}


# -- the customer's "check my payment" and copy (kiosk/check_code.py) --------------------
def _verified_payment(engine: PaymentEngine, payment_id: str, code: str) -> str:
    """The payment id when `code` is its check code. Otherwise one answer, `not_found`,
    whether the id exists or not (ids are sequential: an id alone proves nothing), and the
    failure counts towards the terminal's pause (`check_locked`)."""
    limiter = engine.check_limiter
    limiter.guard()
    pid = payment_id.strip().upper()
    p = t.payments
    with engine.ledger.read() as db:
        stored = db.scalar(select(p.c.check_code).where(p.c.id == pid))
    if code_matches(stored, code):
        return pid
    if limiter.failed():
        pause = limiter.limits.cooldown_s
        engine.record_event(
            "payment_check_locked",
            "warning",
            {"failures": limiter.limits.max_failures, "pause_s": pause},
        )
        raise CheckRefused(LOCKED, f"too many wrong attempts; try again in {int(pause)} s")
    raise CheckRefused(NOT_FOUND, "no payment with this number and check code on this terminal")


def check_payment(engine: PaymentEngine, payment_id: str, code: str) -> dict[str, Any]:
    """What the holder of a receipt may see of the payment (docs/local-api.md)."""
    return engine.payment_status(_verified_payment(engine, payment_id, code))


def customer_reprint(engine: PaymentEngine, payment_id: str, code: str) -> dict[str, Any]:
    """A copy for the holder of the receipt, between customers, within the terminal's
    reprint limits (one every so often, a few per payment); a copy the printer could not
    print does not use up the payment's quota."""
    engine.run_exclusive(lambda: None)  # `busy` while a customer session is in progress
    pid = _verified_payment(engine, payment_id, code)
    engine.check_limiter.take_reprint(pid)
    result = reprint(engine, pid, by="customer")
    if not result["printed"]:
        engine.check_limiter.give_back_reprint(pid)
    return result


def printer_model(config: Config) -> str:
    """What the test page calls the printer: the firmware profile's name (a profile given
    as a file: the name written in it), or the kind for a printer without a profile (the
    virtual one). Never just "escpos": the technician checks the model is the right one."""
    pc = config.printer
    if not pc.profile:
        return pc.kind
    if not pc.profile.endswith(".toml"):
        return pc.profile
    try:
        return load_profile(Path(pc.profile)).name
    except (OSError, ValueError):  # the printer could not start either; say what is set
        return Path(pc.profile).stem


def test_print(engine: PaymentEngine) -> dict[str, Any]:
    document = receipts.test_page(engine.terminal_info(), printer_model(engine.config))
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
