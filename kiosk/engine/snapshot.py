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
        screen=e.screen,
        out_of_service=MappingProxyType(dict(e.oos_reasons)),
        acceptor_status=e.acceptor_status,
        acceptor_detail=e.acceptor_detail,
        acceptor_info=e.acceptor.info,
        printer_status=e.printer_status,
        support_phone=e.support_phone,
        config_version=e.config_version,
        reconciled=e.reconciled,
        disk=e.disk,
        restart_requested=e.restart_requested,
        acceptor_test=e.acceptor_test,
    )


def build_snapshot(e: EngineCore, now: float) -> dict[str, Any]:
    """Called with the engine lock held; `now` is the engine's clock."""
    s = e.session
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
            "bill_in_escrow": e.pending is not None,
            "finishing": s.finishing,
            "can_pay": s.inserted_minor >= p.min_minor and not s.finishing,
            "can_cancel": s.inserted_minor == 0 and e.pending is None,
        }
    oos = None
    if e.screen in (Screen.OUT_OF_SERVICE, Screen.STARTING):
        code = (
            "oos_starting"
            if e.screen is Screen.STARTING
            else _oos_code(e.oos_reasons)
        )
        oos = {
            "reasons": sorted(e.oos_reasons),
            **message(code, phone=e.support_phone),
        }
    return {
        "seq": e.seq,
        "screen": e.screen.value,
        "terminal": {
            "id": e.config.terminal.id,
            "support_phone": e.support_phone,
            "address": e.config.terminal.address,
        },
        "session": session,
        "prompt": (
            {
                "kind": "continue",
                "remaining_s": max(0, round(e.prompt_deadline - now)),
                **message("continue_prompt"),
            }
            if e.prompt_deadline is not None
            else None
        ),
        "notice": e.notice,
        "printer": {
            "status": e.printer_status.value,
            "can_print": e.printer_status.can_print,
        },
        "printer_warning": (
            not e.printer_status.can_print and not e.no_receipt_accepted
        ),
        "acceptor": {"status": e.acceptor_status.value},
        "out_of_service": oos,
        "last_payment": dict(e.last_payment) if e.last_payment else None,
        "help_texts": e.help_texts,
        "config_version": e.config_version,
    }


def _oos_code(reasons: dict[str, str]) -> str:
    for code in ("service", "acceptor", "printer"):
        if code in reasons:
            return f"oos_{code}"
    return "oos_generic"
