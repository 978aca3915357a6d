"""The customer session's screens and how long each may sit untouched."""

from __future__ import annotations

import enum

from kiosk.config import TimeoutsConfig


class Screen(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    PROVIDER = "provider"
    ACCOUNT = "account"
    CONFIRM = "confirm"
    CASH = "cash"
    RECEIPT = "receipt"
    OUT_OF_SERVICE = "out_of_service"

    @property
    def is_customer(self) -> bool:
        """Screens with a customer in front of them, and so a timeout."""
        return self in _TIMED


_TIMED = frozenset({Screen.PROVIDER, Screen.ACCOUNT, Screen.CONFIRM, Screen.CASH, Screen.RECEIPT})

# Screens that end on timeout without asking "continue?" first.
PROMPTLESS = frozenset({Screen.RECEIPT})

# Screens the customer may leave with "cancel" (no cash can be inside yet).
CANCELLABLE = frozenset({Screen.PROVIDER, Screen.ACCOUNT, Screen.CONFIRM})


def screen_timeout(screen: Screen, t: TimeoutsConfig) -> float:
    return {
        Screen.PROVIDER: t.provider,
        Screen.ACCOUNT: t.account,
        Screen.CONFIRM: t.confirm,
        Screen.CASH: t.cash_first_bill,
        Screen.RECEIPT: t.receipt,
    }.get(screen, float("inf"))
