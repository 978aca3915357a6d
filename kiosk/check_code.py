"""Check codes: what proves, at the terminal, that a customer holds a payment's receipt.

Payment ids are sequential (M5), so an id alone must never open a payment's details:
"check my payment" and the customer's reprint ask for the id AND its check code, a short
random number printed on the receipt (and shown on the receipt screen). A wrong pair gets
the same answer whether the id exists or not, and failures are rate-limited here, in the
core, so neither a restarted UI nor another client of the socket lifts the limit.

The code is six decimal digits from the operating system's CSPRNG (`secrets`): typed on the
numeric keypad the check screen already has, read out over the phone without look-alike
letters in Russian or English, and one in a million to guess. With five failures per ten
minutes and then a five-minute pause, guessing one payment's code takes years.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from kiosk.coded_error import CodedError

CODE_DIGITS = 6
_NO_CODE = "\0" * CODE_DIGITS  # compared against when a payment has no code: never matches


def new_check_code() -> str:
    """A fresh code: CODE_DIGITS decimal digits from the CSPRNG (leading zeros kept)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def normalise_code(typed: str) -> str:
    """What the customer typed, without the spaces or dashes a receipt reader may add."""
    return "".join(ch for ch in typed if ch not in " -\u00a0")


def code_matches(stored: str | None, typed: str) -> bool:
    """Constant-time comparison; a payment without a code (made before the ledger had
    them) matches nothing."""
    given = normalise_code(typed).encode("utf-8", "replace")
    expected = (stored if stored else _NO_CODE).encode()
    return hmac.compare_digest(expected, given) and stored is not None


class CheckRefused(CodedError):
    """A customer check or reprint refused: `not_found` (the pair does not match anything,
    whatever the reason), `check_locked` (too many failures: wait), `reprint_limit`."""


NOT_FOUND = "not_found"
LOCKED = "check_locked"
REPRINT_LIMIT = "reprint_limit"


@dataclass(frozen=True)
class CheckLimits:
    """How many wrong pairs the terminal takes, and how often a customer may reprint.

    Per terminal, not per payment: a stranger trying ids is stopped the same way as one
    trying codes."""

    max_failures: int = 5  # wrong pairs within `window_s` before the pause
    window_s: float = 600.0
    cooldown_s: float = 300.0  # the pause: every check and reprint is refused meanwhile
    reprint_interval_s: float = 60.0  # between two customer reprints on this terminal
    copies_per_payment: int = 2  # customer copies of one payment per core run


class CheckLimiter:
    """The failure window and the reprint quota, on the engine's clock (monotonic; tests
    drive it). In memory: it lives as long as the core, whatever the UI does."""

    def __init__(self, clock: Callable[[], float], limits: CheckLimits | None = None) -> None:
        self._clock = clock
        self.limits = limits or CheckLimits()
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._locked_until = 0.0
        self._last_reprint: float | None = None
        self._copies: dict[str, int] = {}

    def locked_for(self) -> float:
        """Seconds until checks are allowed again (0 when they are)."""
        with self._lock:
            return max(0.0, self._locked_until - self._clock())

    def guard(self) -> None:
        """Refuse at once while the pause lasts: nothing is looked up meanwhile."""
        remaining = self.locked_for()
        if remaining > 0:
            raise CheckRefused(
                LOCKED, f"too many wrong attempts; try again in {int(remaining) + 1} s"
            )

    def failed(self) -> bool:
        """Count a wrong pair; True when it starts the pause."""
        limits = self.limits
        with self._lock:
            now = self._clock()
            while self._failures and now - self._failures[0] >= limits.window_s:
                self._failures.popleft()
            self._failures.append(now)
            if len(self._failures) < limits.max_failures:
                return False
            self._failures.clear()
            self._locked_until = now + limits.cooldown_s
            return True

    def take_reprint(self, payment_id: str) -> None:
        """Allow one customer copy of `payment_id` now, or refuse with `reprint_limit`."""
        limits = self.limits
        with self._lock:
            now = self._clock()
            last = self._last_reprint
            if last is not None and now - last < limits.reprint_interval_s:
                wait = int(limits.reprint_interval_s - (now - last)) + 1
                raise CheckRefused(REPRINT_LIMIT, f"a copy was just printed; try again in {wait} s")
            if self._copies.get(payment_id, 0) >= limits.copies_per_payment:
                raise CheckRefused(
                    REPRINT_LIMIT,
                    f"at most {limits.copies_per_payment} copies of one payment; call support",
                )
            self._last_reprint = now
            self._copies[payment_id] = self._copies.get(payment_id, 0) + 1

    def give_back_reprint(self, payment_id: str) -> None:
        """A copy that did not print does not count against the payment's quota."""
        with self._lock:
            count = self._copies.get(payment_id, 0)
            if count > 0:
                self._copies[payment_id] = count - 1
