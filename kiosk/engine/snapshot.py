"""The engine's two outside views, both taken under the engine lock.

- `build_snapshot`: the customer-facing snapshot (a JSON-able dict) that the local API
  pushes to the UI after every change (docs/local-api.md);
- `EngineStatus`: a frozen view of the service state for the technician's status, the
  desk's health message and the agent, so no other module reads engine state directly.
"""

from __future__ import annotations

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
        session = {
            "provider": {
                "id": p.id,
                "name_ru": p.name_ru,
                "name_en": p.name_en,
                "account_mask": p.account_mask,
                "min_minor": p.min_minor,
                "max_minor": p.max_minor,
                "currency": p.currency,
            },
            "account": s.account,
            "account_display": p.format_account(s.account),
            "account_valid": p.validate_account(s.account),
            "inserted_minor": s.inserted_minor,
            "commission_minor": fee,
            "credited_minor": s.inserted_minor - fee,
            "bill_in_escrow": e._pending is not None,
            "finishing": s.finishing,
            "can_pay": s.inserted_minor >= p.min_minor and not s.finishing,
            "can_cancel": s.inserted_minor == 0 and e._pending is None,
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
                **message("continue_prompt"),
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
        "config_version": e.config_version,
    }


def _oos_code(reasons: dict[str, str]) -> str:
    for code in ("service", "acceptor", "printer"):
        if code in reasons:
            return f"oos_{code}"
    return "oos_generic"
