"""The engine's two outside views, both taken under the engine lock.

- `build_snapshot`: the customer-facing snapshot (a JSON-able dict) that the local API
  pushes to the UI after every change (docs/local-api.md);
- `EngineStatus`: a frozen view of the service state for the technician's status, the
  desk's health message and the agent, so no other module reads engine state directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from drivers.acceptor import AcceptorStatus, DeviceInfo
from drivers.printer import PrinterStatus
from kiosk.device_health import DeviceError, SyncState
from kiosk.diskguard import DiskLevel
from kiosk.engine.core import EngineCore, SeenBill
from kiosk.messages import message
from kiosk.screens import Screen


@dataclass(frozen=True)
class EngineStatus:
    """The engine's service state at one moment (a copy: it never changes afterwards)."""

    terminal_id: str
    screen: Screen
    out_of_service: Mapping[str, str]  # reason code -> technician detail (read-only)
    acceptor_status: AcceptorStatus
    acceptor_detail: str
    acceptor_info: DeviceInfo
    printer_status: PrinterStatus
    support_phone: str
    config_version: int | None
    reconciled: bool
    disk: DiskLevel
    restart_requested: bool
    acceptor_test: tuple[SeenBill, ...] | None  # bills seen, None when the test is off
    sync: SyncState  # the desk link as the sync agent reported it
    device_errors: Mapping[str, DeviceError]  # device -> its last error since start

    @property
    def in_service(self) -> bool:
        return not self.out_of_service

    @property
    def between_customers(self) -> bool:
        """No customer session: technician operations and restarts may run."""
        return self.screen in BETWEEN_CUSTOMERS


BETWEEN_CUSTOMERS = (Screen.IDLE, Screen.OUT_OF_SERVICE)


def build_status(e: EngineCore) -> EngineStatus:
    """Called with the engine lock held."""
    return EngineStatus(
        terminal_id=e.config.terminal.id,
        screen=e._screen,
        out_of_service=MappingProxyType(dict(e._oos_reasons)),
        acceptor_status=e._acceptor_status,
        acceptor_detail=e._acceptor_detail,
        acceptor_info=e.acceptor.info,
        printer_status=e._printer_status,
        support_phone=e.support_phone,
        config_version=e.config_version,
        reconciled=e._reconciled,
        disk=e._disk,
        restart_requested=e.restart_requested,
        acceptor_test=e.acceptor_test,
        sync=e._sync_state,
        device_errors=MappingProxyType(dict(e._device_errors)),
    )


def build_snapshot(e: EngineCore, now: float) -> dict[str, Any]:
    """Called with the engine lock held; `now` is the engine's clock."""
    s = e._session
    session = None
    if s is not None:
        p = s.provider
        fee = p.commission(s.inserted_minor)
        credited = s.inserted_minor - fee
        pending = e._pending
        session = {
            "provider": {
                "id": p.id,
                "name_ru": p.name_ru,
                "name_en": p.name_en,
                "account_mask": p.account_mask,
                "min_minor": p.min_minor,
                "max_minor": p.max_minor,
                "currency": p.currency,
                # the fee terms, disclosed before any cash goes in (docs/catalog.md)
                "bands": [dataclasses.asdict(b) for b in p.bands],
            },
            "account": s.account,
            "account_display": p.format_account(s.account),
            "account_valid": p.validate_account(s.account),
            "inserted_minor": s.inserted_minor,
            "commission_minor": fee,
            "credited_minor": credited,
            "bill_in_escrow": pending is not None,
            # the bill being checked, from the escrow report on (nothing credited yet, M1)
            "escrow": (
                {"amount_minor": pending.bill.amount_minor, "currency": pending.bill.currency}
                if pending is not None
                else None
            ),
            # the banknotes this session may take now (live bill table, escrow rule)
            "accepted_notes_minor": sorted(e._acceptable_notes(s)),
            "finishing": s.finishing,
            "can_pay": _pay_blocked(s.inserted_minor, p.min_minor, credited) is None
            and not s.finishing,
            "pay_blocked": _pay_blocked(s.inserted_minor, p.min_minor, credited),
            # cash is in but the fee would take all of it: the customer may add more
            "fee_takes_all": s.inserted_minor > 0 and credited <= 0,
            "can_cancel": s.inserted_minor == 0 and pending is None,
            "rejected_bills": s.rejected_bills,  # for proactive help (docs/self-service.md)
            "recent_notices": list(s.notices),
        }
    oos = None
    if e._screen in (Screen.OUT_OF_SERVICE, Screen.STARTING):
        code = (
            "oos_starting"
            if e._screen is Screen.STARTING
            else _oos_code(e._oos_reasons)
        )
        oos = {
            "reasons": sorted(e._oos_reasons),
            **message(code, phone=e.support_phone),
        }
    return {
        "seq": e._seq,
        "screen": e._screen.value,
        "terminal": {
            "id": e.config.terminal.id,
            "support_phone": e.support_phone,
            "address": e.config.terminal.address,
        },
        "session": session,
        "prompt": (
            {
                "kind": "continue",
                "remaining_s": max(0, round(e._prompt_deadline - now)),
                **(
                    # with too little cash for a payment, say what will happen instead
                    message("continue_prompt_unclaimed", phone=e.support_phone)
                    if s is not None and s.unpayable and e._pending is None
                    else message(
                        "continue_prompt_cash"
                        if s is not None and (s.inserted_minor > 0 or e._pending is not None)
                        else "continue_prompt"
                    )
                ),
            }
            if e._prompt_deadline is not None
            else None
        ),
        "notice": e._notice_shown,
        "printer": {
            "status": e._printer_status.value,
            "can_print": e._printer_status.can_print,
        },
        "printer_warning": (
            not e._printer_status.can_print and not e._no_receipt_accepted
        ),
        "acceptor": {"status": e._acceptor_status.value},
        "out_of_service": oos,
        "last_payment": dict(e._last_payment) if e._last_payment else None,
        "help_texts": e.help_texts,
        "help_code": e.help_code,  # while the customer has help open (self-service.md)
        "config_version": e.config_version,
    }


def _pay_blocked(inserted: int, min_minor: int, credited: int) -> str | None:
    """Why "pay" is refused now (the same order as the engine's `pay` intent), or None."""
    if inserted == 0:
        return "no_cash"
    if inserted < min_minor:
        return "below_minimum"
    if credited <= 0:
        return "no_credit"
    return None


def _oos_code(reasons: dict[str, str]) -> str:
    for code in ("service", "acceptor", "printer"):
        if code in reasons:
            return f"oos_{code}"
    return "oos_generic"
